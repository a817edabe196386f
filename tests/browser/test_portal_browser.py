"""A person goes from the home page to a confirmed request and its status page, in Chromium."""

from __future__ import annotations

import re

import pytest
from rq import SimpleWorker

from app.queue import new_worker

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config, smtp_sink):
    return {**app_config, **smtp_sink.config()}


def deliver_mail(redis_conn) -> None:
    new_worker(["mail"], redis_conn, worker_class=SimpleWorker).work(burst=True)


def test_subject_requests_confirms_and_sees_status(live_server, browser_page, smtp_sink, redis_conn, screenshot_path):
    page = browser_page
    page.goto(live_server + "/")
    page.get_by_role("link", name="Start a request").first.click()
    page.wait_for_url(re.compile(r"/requests/new"))
    # Submitting empty shows the error summary, linked to the fields.
    page.get_by_role("button", name="Send request").click()
    assert page.locator(".error-summary").is_visible()
    assert page.locator("#email").get_attribute("aria-invalid") == "true"

    page.get_by_label("Correct my data (correction)").check()
    page.get_by_label("Email address", exact=True).first.fill("linus@example.com")
    page.get_by_label("Full name").fill("Linus Example")
    page.get_by_label("Where do you live?").select_option("gdpr")
    page.locator("#correction-0-field").select_option("company")
    page.locator("#correction-0-value").fill("Example Corp")
    page.screenshot(path=screenshot_path("portal-form-filled"), full_page=True)
    page.get_by_role("button", name="Send request").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()

    deliver_mail(redis_conn)
    links = smtp_sink.links("linus@example.com", "/verify/")
    assert len(links) == 1 and links[0].startswith(live_server)
    page.goto(links[0])
    assert page.url == live_server + "/verify"  # the token left the address bar at once
    page.get_by_role("button", name="Confirm my request").click()
    page.get_by_role("heading", name=re.compile("your request is confirmed")).wait_for()
    reference = page.locator(".reference").first.inner_text()
    assert re.fullmatch(r"DSR-[0-9A-Z]{4}-[0-9A-Z]{4}", reference)

    page.get_by_role("link", name="See the status of your request").click()
    page.wait_for_url(re.compile(r"/requests/DSR-[0-9A-Z-]+$"))  # the clean URL: no token to leak
    assert page.get_by_text("Waiting for review").first.is_visible()
    assert page.get_by_role("button", name="Cancel this request").is_visible()
    page.screenshot(path=screenshot_path("portal-status"), full_page=True)

    deliver_mail(redis_conn)
    assert smtp_sink.links("linus@example.com", f"/requests/{reference}")


@pytest.mark.parametrize("width, height, name", [(390, 844, "phone"), (1280, 900, "desktop")])
def test_home_and_form_render_at_phone_and_desktop_widths(
    live_server, browser_page, screenshot_path, width, height, name
):
    page = browser_page
    page.set_viewport_size({"width": width, "height": height})
    page.goto(live_server + "/")
    page.screenshot(path=screenshot_path(f"portal-home-{name}"), full_page=True)
    page.goto(live_server + "/requests/new")
    # nothing overflows sideways on a phone
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
    page.screenshot(path=screenshot_path(f"portal-form-{name}"), full_page=True)
    # keyboard: the skip link is the first thing Tab reaches
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
