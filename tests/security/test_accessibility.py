"""Accessibility: axe-core (from the npm registry, fetched once into the pytest cache) on every portal
page and the main admin pages. No violation of impact "serious" or "critical" is allowed.

``add_script_tag(path=...)`` injects axe as inline script, which our CSP (``script-src 'self'``)
rightly blocks, so these pages are opened in a context that bypasses CSP for the axe run only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest

from app.dsr import services
from app.dsr.models import CorrectionItem
from app.dsr.states import RequestStatus
from app.extensions import db
from tests.browser_fixtures import fresh_page
from tests.factories import make_request, make_staff
from tests.security.conftest import browser_login

pytestmark = pytest.mark.browser

BLOCKING = {"serious", "critical"}
RUN_AXE = """async () => {
  const result = await axe.run(document);
  return {passes: result.passes.length, violations: result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + n.failureSummary.replace(/\\s+/g, ' ')),
  }))};
}"""


@pytest.fixture(scope="session")
def axe_script(request, tmp_path_factory) -> Path:
    config_cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache = Path(config_cache.mkdir("axe-core")) if config_cache else tmp_path_factory.mktemp("axe-core")
    script = cache / "package" / "axe.min.js"
    if script.is_file():
        return script
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI"):
            pytest.fail("npm is not installed: CI must run the accessibility tests (.ci/run installs npm)")
        print("skipping accessibility tests: npm is not installed")
        pytest.skip("npm is not installed (needed to fetch axe-core from the npm registry)")
    try:
        out = subprocess.run(
            [npm, "pack", "axe-core@4", "--pack-destination", str(cache), "--silent"],
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"npm pack axe-core@4 failed in CI: {exc}")
        print(f"skipping accessibility tests: npm pack axe-core@4 failed: {exc}")
        pytest.skip(f"npm pack axe-core@4 failed: {exc}")
    tarball = cache / out.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
        member = tar.getmember("package/axe.min.js")
        tar.extract(member, cache, filter="data")
    tarball.unlink()
    assert script.is_file()
    return script


@pytest.fixture
def axe_page(_chromium, axe_script):
    # bypass_csp: the strict CSP would refuse the injected axe-core script.
    with fresh_page(_chromium, bypass_csp=True) as page:
        yield page


def _axe(page, script: Path, name: str) -> list[dict]:
    page.add_script_tag(path=str(script))
    found = page.evaluate(RUN_AXE)
    assert found["passes"] > 10, (name, found)  # axe really ran its rules on a real page
    return [dict(v, page=name) for v in found["violations"] if v["impact"] in BLOCKING]


def test_accessibility_portal_and_admin_pages_have_no_serious_violations(app, live_server, axe_page, axe_script):
    page = axe_page
    dsr = make_request(RequestStatus.PENDING_REVIEW, request_type="correction", details="Please fix my name.")
    dsr.corrections.append(CorrectionItem(field="name", proposed_value="Sam Q. Subject"))
    raw_status = services.issue_token(dsr, "status")
    unverified = make_request(RequestStatus.UNVERIFIED)
    raw_verify = services.issue_token(unverified, "verify", lifetime=timedelta(hours=24), max_uses=1)
    deletion = make_request(RequestStatus.PENDING_REVIEW, request_type="deletion")
    admin = make_staff("admin", email="a11y.admin@staff.test")
    db.session.commit()
    violations: list[dict] = []
    checked: list[str] = []

    def check(name: str, path: str | None = None) -> None:
        if path is not None:
            resp = page.goto(f"{live_server}{path}")
            assert resp is not None and resp.status < 500, (name, resp and resp.status)
        violations.extend(_axe(page, axe_script, name))
        checked.append(name)

    check("home", "/")
    check("new request form", "/requests/new")
    page.click("button[type=submit]")  # the form is novalidate: the server answers with its errors
    page.wait_for_selector(".error, [aria-invalid=true], .error-summary")
    check("form with errors")
    page.goto(f"{live_server}/requests/new?type=access")
    page.check("input[name=request_type][value=access]")
    page.fill("input[name=email]", "a11y@example.com")
    page.fill("input[name=full_name]", "Alex Access")
    page.select_option("select[name=jurisdiction]", "gdpr")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    check("check-inbox page")
    check("verify page", f"/verify/{raw_verify}")
    check("status page", f"/requests/{dsr.reference}?token={raw_status}")
    check("link-problem page", "/verify/not-a-real-token")
    check("not-found page", "/no-such-page")
    check("admin login", "/admin/login")
    browser_login(page, live_server, admin)
    check("admin dashboard", "/admin/")
    check("admin queue", "/admin/requests")
    check("admin detail (correction)", f"/admin/requests/{dsr.reference}")
    check("admin detail (deletion)", f"/admin/requests/{deletion.reference}")
    check("admin reports", "/admin/reports")
    check("admin audit", "/admin/audit")
    print(f"axe: {len(checked)} pages checked: {', '.join(checked)}")
    for v in violations:
        print(f"  [{v['impact']}] {v['page']}: {v['id']} - {v['help']}")
        for node in v["nodes"]:
            print(f"      {node}")
    assert len(checked) == 15
    assert violations == [], [(v["page"], v["id"], v["nodes"][:2]) for v in violations]
