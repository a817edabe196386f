// Live fulfilment progress on the request detail page: polls the JSON endpoint named by the
// <progress> element's data-progress-url while a job runs, then reloads once it has finished.
(function () {
  "use strict";
  var bar = document.getElementById("job-progress");
  if (!bar || bar.getAttribute("data-running") !== "1") {
    return;
  }
  var url = bar.getAttribute("data-progress-url");
  var text = document.getElementById("job-progress-text");
  var delay = 2000;
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json();
      })
      .then(function (data) {
        bar.value = data.percent;
        bar.textContent = data.percent + "%";
        if (text) {
          text.textContent = data.percent + "% · " + data.rows + " rows" + (data.note ? " · " + data.note : "") +
            " · " + data.status_label;
        }
        if (data.running) {
          setTimeout(tick, delay);
        } else {
          window.location.reload();
        }
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000);
        setTimeout(tick, delay);
      });
  }
  setTimeout(tick, delay);
})();
