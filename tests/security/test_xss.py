"""Stored and reflected XSS: every payload of ``xss_payloads.txt`` in every text a subject or an officer
can write, then every page that shows it opened in Chromium.

The browser context bypasses the Content Security Policy on purpose: CSP is defence in depth (tested in
``test_headers_cookies.py``); here we prove that escaping alone stops every payload. A payload that got
through would set ``window.__xss``, open a dialog, or leave an element marked ``data-xss`` (or a
``javascript:`` URL) in the DOM even where the browser would not run it.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from app.audit import Actor
from app.audit.models import AuditEvent
from app.dsr import services
from app.dsr.models import CorrectionItem
from app.extensions import db
from app.mail import queue_mail
from app.mail.models import OutgoingMail
from tests.factories import make_request, make_staff
from tests.security.conftest import browser_login

PAYLOADS = [
    line
    for line in (Path(__file__).parent / "xss_payloads.txt").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("# ")
]


def pack(payloads: list[str], limit: int) -> list[str]:
    """Join payloads (space-separated) into as few strings of at most ``limit`` characters as possible:
    every payload still lands in every field, with far fewer pages to open."""
    chunks: list[str] = []
    for p in payloads:
        if chunks and len(chunks[-1]) + 1 + len(p) <= limit:
            chunks[-1] += " " + p
        else:
            chunks.append(p[:limit])
    return chunks


NAMES = pack(PAYLOADS, 200)  # full_name holds 200 characters
VALUES = pack(PAYLOADS, 254)  # a proposed value, the queue search and the audit actor filter: 254
TEXTS = pack(PAYLOADS, 1000)  # details, notes, reasons, messages (notes are cut at 1000)
TRIPLES = -(-len(NAMES) // 3)

PROBE = """() => ({
  flag: typeof window.__xss,
  marked: document.querySelectorAll('[data-xss]').length,
  jsUrls: Array.from(document.querySelectorAll('[href],[src],[action],[formaction],[data]'))
    .filter(el => ['href', 'src', 'action', 'formaction', 'data']
      .some(a => (el.getAttribute(a) || '').replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase()
        .startsWith('javascript:'))).length,
  scripts: Array.from(document.scripts).filter(s => !s.src || new URL(s.src).origin !== location.origin).length,
})"""


def test_xss_corpus_has_at_least_fifty_distinct_payloads():
    assert len(set(PAYLOADS)) >= 50, len(set(PAYLOADS))


def _seed(triples: int) -> tuple[list[tuple[str, str]], list[str], list[int]]:
    """Three requests per triple, so every payload lands in every field and every state that shows it.

    A (correction): proposed values, a note, an extension reason, a question to the subject, a hold
    reason and a denial text (closed as denied). B (access): left on hold with the text as the hold
    reason. C (deletion): cancelled by staff with the text as the reason. Names cycle through ``NAMES``,
    proposed values through ``VALUES`` and the free texts through ``TEXTS``.
    """
    officer = make_staff("officer", email="xss.officer@staff.test")
    actor = Actor.staff(officer)
    status_links: list[tuple[str, str]] = []
    references: list[str] = []
    for t in range(triples):
        names = [NAMES[(3 * t + k) % len(NAMES)] for k in range(3)]
        text = TEXTS[t % len(TEXTS)]
        a = make_request(request_type="correction", full_name=names[0], details=text, email=f"xss-a{t}@example.com")
        for v in VALUES[t::triples]:
            a.corrections.append(CorrectionItem(field="name", proposed_value=v))
        queue_mail(
            a.email,
            "verify",
            "Confirm your privacy request",
            dsr=a,
            link="http://x/verify/t",
            hours=24,
            type_label="Correction",
        )
        services.add_note(a, actor, text)
        a = services.staff_extend(a, actor, text)
        a = services.request_info(a, actor, text)
        a = services.resume(a, actor)
        a = services.hold(a, actor, text)
        a = services.resume(a, actor)
        a = services.staff_deny(a, actor, "other", text)
        b = make_request(request_type="access", full_name=names[1], details=text, email=f"xss-b{t}@example.com")
        b = services.hold(b, actor, text)
        c = make_request(request_type="deletion", full_name=names[2], email=f"xss-c{t}@example.com")
        c = services.staff_cancel(c, actor, text)
        for dsr in (a, b, c):
            status_links.append((dsr.reference, services.issue_token(dsr, "status")))
            references.append(dsr.reference)
        db.session.commit()
    mail_ids = list(db.session.execute(select(OutgoingMail.id).order_by(OutgoingMail.id)).scalars())
    return status_links, references, mail_ids


def test_outgoing_html_mail_escapes_every_payload(app):
    _seed(TRIPLES)
    mails = db.session.execute(select(OutgoingMail).where(OutgoingMail.body_html.is_not(None))).scalars().all()
    assert len(mails) >= TRIPLES  # the verification mail greets each A request by name
    for mail in mails:
        for p in PAYLOADS:
            if "<" in p:
                assert p not in mail.body_html, (mail.template, p)


@pytest.mark.browser
def test_xss_payloads_never_run_on_any_page(app, live_server, _chromium):
    started = time.monotonic()
    status_links, references, mail_ids = _seed(TRIPLES)
    admin = make_staff("admin", email="xss.admin@staff.test")
    seeded = time.monotonic()

    context = _chromium.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    dialogs: list[tuple[str, str]] = []

    def on_dialog(dialog):
        dialogs.append((page.url, f"{dialog.type}: {dialog.message}"))
        dialog.dismiss()

    page.on("dialog", on_dialog)
    problems: list[tuple[str, dict]] = []
    visited = 0

    def visit(path: str) -> None:
        nonlocal visited
        resp = page.goto(f"{live_server}{path}", wait_until="domcontentloaded")
        assert resp is not None and resp.status < 500, (path, resp and resp.status)
        found = page.evaluate(PROBE)
        visited += 1
        if found["flag"] != "undefined" or found["marked"] or found["jsUrls"] or found["scripts"]:
            problems.append((path, found))

    try:
        for reference, raw in status_links:
            visit(f"/requests/{reference}?token={raw}")
        browser_login(page, live_server, admin)
        for reference in references:
            visit(f"/admin/requests/{reference}")
        n_requests = len(references)
        for n in range(1, -(-n_requests // 25) + 1):
            visit(f"/admin/requests?page={n}")
        visit("/admin/requests?status=on_hold")
        for p in VALUES:  # reflected: the search box and the audit filters echo what they were given
            visit(f"/admin/requests?q={quote(p, safe='')}")
        for p in VALUES:
            visit(f"/admin/audit?actor={quote(p, safe='')}&reference={quote(p[:32], safe='')}")
        audit_pages = db.session.execute(select(db.func.count(AuditEvent.id))).scalar_one() // 50 + 1
        for n in range(1, audit_pages + 1):
            visit(f"/admin/audit?page={n}")
        for n in range(1, len(mail_ids) // 50 + 2):
            visit(f"/admin/outbox?page={n}")
        for mail_id in mail_ids:
            visit(f"/admin/outbox/{mail_id}")
        visit("/admin/")
        visit("/admin/reports")
        final = page.evaluate(PROBE)
    finally:
        context.close()
    print(
        f"xss: {len(PAYLOADS)} payloads, {len(references)} requests, {len(mail_ids)} mails, {visited} pages; "
        f"seed {seeded - started:.1f}s, browse {time.monotonic() - seeded:.1f}s"
    )
    assert visited > 2 * len(references)
    assert dialogs == [], dialogs[:10]
    assert problems == [], problems[:10]
    assert final["flag"] == "undefined"
