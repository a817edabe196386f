"""Taking a mail apart: headers, HTML to text, quoted replies; the mailbox URL and its production rule."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_config
from app.mailbox.imap import parse_imap_url
from app.mailbox.parse import html_to_text, parse_mail, without_quote


def test_parse_imap_url_decodes_credentials_and_defaults_the_folder():
    url = parse_imap_url("imaps://privacy%40example.com:p%40ss%3Aw@imap.example.com")
    assert (url.secure, url.host, url.port, url.username, url.password, url.folder) == (
        True,
        "imap.example.com",
        993,
        "privacy@example.com",
        "p@ss:w",
        "INBOX",
    )
    assert "p@ss" not in url.name
    assert parse_imap_url("imap://u:p@127.0.0.1:1143/Privacy").loopback


@pytest.mark.parametrize("bad", ["http://u:p@host/", "imaps://host/INBOX", "imaps://u:p@host:99999/"])
def test_parse_imap_url_refuses_what_it_cannot_use_without_echoing_the_password(bad):
    with pytest.raises(ValueError) as info:
        parse_imap_url(bad)
    assert "p@" not in str(info.value)


def test_production_refuses_plain_imap_to_another_machine(tmp_path):
    base = {"APP_ENV": "testing", "SECRET_KEY": "k" * 40}
    assert load_config(tmp_path, {**base, "MAIL_IMAP_URL": "imap://u:p@127.0.0.1/INBOX"})["MAIL_IMAP_URL"]
    with pytest.raises(ConfigError, match="imaps://"):
        load_config(tmp_path, {**base, "MAIL_IMAP_URL": "ftp://u:p@host/"})
    import secrets

    production = {"APP_ENV": "production", "SECRET_KEY": secrets.token_hex(32), "EMAIL_HASH_KEY": secrets.token_hex(32)}
    with pytest.raises(ConfigError, match="imaps://") as info:
        load_config(tmp_path, {**production, "MAIL_IMAP_URL": "imap://u:secret@mail.example.com/"})
    assert "secret" not in str(info.value)


def test_html_to_text_drops_markup_scripts_and_styles():
    text = html_to_text(
        "<style>b{}</style><p>One &amp; two</p><script>alert(1)</script><div>three<br>four</div>"
        "<img src=x onerror=alert(1)>"
    )
    assert text == "One & two\n\nthree\nfour"


def test_without_quote_keeps_only_the_new_part_of_a_reply():
    reply = "Yes, that is me.\n\nOn Mon, 1 Dec 2026, Privacy wrote:\n> We need more information\n> link"
    assert without_quote(reply) == "Yes, that is me."
    assert without_quote("> only a quote") == "> only a quote"
    assert without_quote("no quote at all\n> but one inline\nand more") == "no quote at all\n> but one inline\nand more"


def test_parse_mail_reads_headers_and_flags_automatic_replies():
    raw = (
        b"From: =?utf-8?q?Zo=C3=AB?= <Zoe@Example.com>\r\nTo: privacy+abc@x.test, other@x.test\r\n"
        b"Subject: Re: hello\r\nIn-Reply-To: <a@x>\r\nReferences: <z@x> <a@x>\r\n"
        b"Auto-Submitted: auto-replied\r\nMessage-ID: <m@y>\r\n\r\nOut of office\r\n"
    )
    parsed = parse_mail(raw)
    assert parsed.from_addr == "zoe@example.com" and parsed.from_name == "Zoë"
    assert parsed.recipients == ["privacy+abc@x.test", "other@x.test"]
    assert parsed.in_reply_to == ["<a@x>"] and parsed.references == ["<z@x>", "<a@x>"]
    assert parsed.auto_submitted and parsed.text == "Out of office" and parsed.message_id == "<m@y>"
    assert parse_mail(raw.replace(b"Message-ID: <m@y>\r\n", b"")).message_id_hash != parsed.message_id_hash


# Headers the email package itself fails on (found by fuzzing; before the fix each stopped the mailbox
# job at that message on every run, so no later mail was read).
BROKEN = [
    b"From: Message-ID: <Content-Type: multipart/mixed; boundary=x",
    b'Message-ID: <>Message-ID: <In-Reply-To: Subject: \xff\xfe=?utf-8?q?To: "a" '
    b"<Content-Disposition: attachment; filename*=utf-8''%ff%fe",
]
PIECES = [
    b"From: ", b"=?utf-8?q?", b"?=", b"<", b">", b"@", b"Subject: ", b"To: \"a\" <", b"Message-ID: <",
    b"Content-Type: multipart/mixed; boundary=x\r\n", b"--x\r\n", b"Content-Type: text/plain; charset=bogus\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Disposition: attachment; filename*=utf-8''%ff%fe\r\n",
    b"\r\n", b"\xff\xfe", b"Date: Mon, 99 Foo 2026 99:99:99 +9999\r\n", b"In-Reply-To: ", b"=?x?b?",
    b"Content-Type: text/html\r\n", b"<script>", b"Auto-Submitted: ", b"Content-Type: message/rfc822\r\n",
]  # fmt: skip


@pytest.mark.parametrize("raw", BROKEN)
def test_parse_mail_reads_headers_the_email_package_cannot_decode(raw):
    parsed = parse_mail(raw)
    assert parsed.message_id_hash


def test_parse_mail_never_raises_on_malformed_mail():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=40))
    def check(parts):
        parse_mail(b"".join(parts))

    check()


# --- the sender and its authentication (review of issue 14, second round) ---------------------------


def _from(header: str):
    from email import message_from_bytes, policy

    from app.mailbox.parse import sender

    return sender(message_from_bytes(f"From: {header}\nSubject: s\n\nbody\n".encode(), policy=policy.default))


def test_an_unambiguous_from_names_its_sender():
    assert _from("Sam Smith <sam@example.com>") == ("Sam Smith", "sam@example.com", "")
    assert _from("=?utf-8?q?S=C3=A9bastien?= <SEB@example.com>") == ("Sébastien", "seb@example.com", "")
    assert _from("sam@example.com (Sam Smith)")[1:] == ("sam@example.com", "")


def test_an_ambiguous_from_is_never_believed():
    for header in (
        "sam@example.com, mallory@evil.test",
        "=?utf-8?q?sam=40example=2Ecom=2C_?=mallory@evil.test",
        "sam@example.com (Sam) <mallory@evil.test>",
        '"sam@example.com" <mallory@evil.test>',
    ):
        assert _from(header)[2], header


def test_authentication_results_of_our_own_server_decide_when_configured():
    from app.mailbox.parse import authenticated

    ours = "mx.chatgpttech.test; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; dmarc=pass"
    forged = "mx.chatgpttech.test; dmarc=pass header.from=example.com"
    failed = "mx.chatgpttech.test; spf=fail; dkim=none; dmarc=fail header.from=example.com"
    assert authenticated([ours], "mx.chatgpttech.test", "sam@example.com")
    # only the topmost header bearing our id counts: one the sender wrote below ours changes nothing
    assert not authenticated([failed, forged], "mx.chatgpttech.test", "sam@example.com")
    # DKIM of another domain is not the From domain's
    other = "mx.chatgpttech.test; dkim=pass header.d=evil.test; dmarc=none"
    assert not authenticated([other], "mx.chatgpttech.test", "sam@example.com")
    assert authenticated(
        ["mx.chatgpttech.test; dkim=pass header.d=example.com"], "mx.chatgpttech.test", "a@mail.example.com"
    )
    # nothing from our server: not vouched for
    assert not authenticated(["other.mx; dmarc=pass"], "mx.chatgpttech.test", "sam@example.com")


def test_without_our_id_only_reported_failures_count():
    from app.mailbox.parse import authenticated

    assert authenticated([], "", "sam@example.com")
    assert authenticated(["any.mx; spf=fail; dkim=pass header.d=example.com"], "", "sam@example.com")
    assert not authenticated(["any.mx; dmarc=fail"], "", "sam@example.com")
    assert not authenticated(["any.mx; spf=fail; dkim=fail"], "", "sam@example.com")


def test_without_quote_cuts_at_the_quote_that_runs_to_the_end():
    from app.mailbox.parse import without_quote

    reply = "Yes, that key.\n\nOn Tue, 1 Dec 2026, Privacy wrote:\n> Which key?\n>\n> Thanks"
    assert without_quote(reply) == "Yes, that key."
    assert without_quote("> quoted first\nthen mine") == "> quoted first\nthen mine"
    assert without_quote("mine\n> quoted\nmine again\n> quoted last") == "mine\n> quoted\nmine again"
