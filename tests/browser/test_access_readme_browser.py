"""README.html from a downloaded package, opened offline in Chromium: a person reads a summary, tables
with human labels, the data dictionary and their law's sections, and the page fetches nothing."""

from __future__ import annotations

import re
import zipfile

import pytest
from sqlalchemy import select

from app.extensions import db
from app.mail.models import OutgoingMail
from tests.browser_fixtures import fresh_page
from tests.factories import make_request
from tests.functional._fulfil import make_subject_data, run_jobs
from tests.functional.test_access_package import approve

pytestmark = pytest.mark.browser


def test_readme_from_downloaded_zip_reads_offline(live_server, _chromium, redis_conn, tmp_path, screenshot_path):
    make_subject_data(usage=40)
    dsr = make_request("pending_review", "access", email="ada@example.com", jurisdiction="gdpr")
    approve(dsr)
    run_jobs(redis_conn)
    mail = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_export_ready")).scalar_one()
    link = re.search(r"https?://\S+/download/\S+", mail.body_text).group(0)

    # Downloaded as the person would, through the emailed link.
    with fresh_page(_chromium, accept_downloads=True) as page:
        response = page.context.request.get(link)
        assert response.ok and response.headers["content-type"].startswith("application/zip")
        archive = tmp_path / "package.zip"
        archive.write_bytes(response.body())
    unpacked = tmp_path / "package"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(unpacked)

    # Opened from the disk with the network off: nothing may be fetched.
    with fresh_page(_chromium, offline=True) as page:
        fetched: list[str] = []
        page.on("request", lambda r: fetched.append(r.url))
        page.goto((unpacked / "README.html").as_uri())
        assert [u for u in fetched if not u.startswith("file://")] == []

        page.get_by_role("heading", name="Your personal data held by ChatGPTTech").wait_for()
        summary = page.locator("#summary")
        for heading in ("What we hold", "Why we hold it", "Who else gets it", "How long we keep it"):
            assert summary.get_by_role("columnheader", name=heading).is_visible()
        assert summary.get_by_role("cell", name=re.compile("API usage logs")).is_visible()
        assert "Stripe, Inc. (United States)" in summary.inner_text()

        # The person's records: labelled columns, ISO 8601 times with their zone, the first rows only.
        usage = page.locator("#cat-usage_logs")
        for label in ("Time of request", "Model", "Input tokens", "Output tokens"):
            assert usage.get_by_role("columnheader", name=label).is_visible()
        assert usage.locator("tbody tr").count() == 10
        first_time = usage.locator("tbody tr").first.locator("td").nth(1).inner_text()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", first_time), first_time
        assert "The first 10 of 40 records" in usage.inner_text()
        account = page.locator("#cat-account")
        assert account.get_by_role("columnheader", name="Email address").is_visible()
        assert account.get_by_role("cell", name="ada@example.com").is_visible()

        # The data dictionary, then the request's own law (GDPR: Art. 15, and no CCPA section).
        dictionary = page.locator("#dictionary")
        assert dictionary.get_by_role("cell", name="prompt_tokens").is_visible()
        assert dictionary.get_by_role("cell", name="Input tokens").is_visible()
        law = page.locator("#law")
        assert law.get_by_role("heading", name=re.compile(r"Transfers outside the European Economic Area")).is_visible()
        assert law.get_by_role("cell", name="Stripe, Inc.").first.is_visible()
        assert "EU-US Data Privacy Framework" in law.inner_text()
        assert "Information Commissioner" in law.inner_text()
        assert page.locator("#ccpa").count() == 0

        # Styled: the summary box has its background, tables their borders.
        background = summary.evaluate("e => getComputedStyle(e).backgroundColor")
        assert background not in ("rgba(0, 0, 0, 0)", "transparent")
        page.screenshot(path=screenshot_path("access-readme-offline"), full_page=True)
        assert [u for u in fetched if not u.startswith("file://")] == []
