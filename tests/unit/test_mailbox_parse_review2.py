"""Review of the mailbox fixes (issue 14), third round: bypasses of the parsing fixes (``parse.sender``,
``parse.authenticated``). Each test is a confirmed finding written as the rule the code should keep; they
fail on commit 7827282."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

OURS = "mx.chatgpttech.test"

# Authentication-Results our own server writes for a forged mail (From: sam@example.com, sent by mallory),
# where a value or comment the sender controls (the SMTP envelope sender, a comment quoting it, a property
# of a method we do not read) carries ";" or "dmarc=pass". Every one of them reports DMARC failed.
FORGED_WITH_OUR_ID = {
    # RFC 5321 allows a quoted local part in MAIL FROM, ";" included; the verifier writes it back as sent
    "quoted_mailfrom_semicolon": f'{OURS}; spf=fail smtp.mailfrom="x;dmarc=pass"@evil.test; dkim=none; '
    "dmarc=fail (p=reject) header.from=example.com",
    # a comment (RFC 8601 CFWS) that holds a ";": Gmail-style SPF comments quote the envelope sender
    "semicolon_in_comment": f'{OURS}; spf=fail (domain of "a;dmarc=pass"@evil.test does not designate '
    "192.0.2.1 as permitted sender) smtp.mailfrom=evil.test; dmarc=fail (p=reject) header.from=example.com",
    # a method we do not read, whose property value (user input) says dmarc=pass
    "other_method_value": f"{OURS}; auth=pass smtp.auth=dmarc=pass@evil.test; dmarc=fail header.from=example.com",
    # "x-dmarc" is not "dmarc": \b matches after the hyphen
    "x_prefixed_method": f"{OURS}; x-dmarc=pass; dmarc=fail header.from=example.com",
}


@pytest.mark.parametrize("result", list(FORGED_WITH_OUR_ID.values()), ids=list(FORGED_WITH_OUR_ID))
def test_review2_a_dmarc_pass_inside_a_value_or_comment_does_not_vouch_for_the_sender(result):
    """Finding A (high): ``authenticated`` splits our header on every ";" and takes the first
    ``(spf|dkim|dmarc)=word`` anywhere in each piece, so text the sender controls (a quoted envelope sender,
    a comment, another method's property) becomes a verdict of our server: a forged reply is threaded as
    the subject's answer although our server wrote dmarc=fail."""
    from app.mailbox.parse import authenticated

    assert not authenticated([result.lower()], OURS, "sam@example.com")


def test_review2_dmarc_passing_for_another_domain_does_not_vouch_for_the_from_domain():
    """Finding B (medium): a DMARC pass is believed whatever domain it was evaluated for; ``header.from``
    is not compared with the From domain we read (a verifier that parses From differently, e.g. the group
    syntax ``sender`` accepts, passes mallory's domain while we read the subject's)."""
    from app.mailbox.parse import authenticated

    assert not authenticated([f"{OURS}; dmarc=pass header.from=evil.test"], OURS, "sam@example.com")


def test_review2_without_our_id_a_later_dmarc_pass_in_a_value_does_not_hide_a_reported_failure():
    """Finding C (high, default configuration: MAIL_AUTHSERV_ID unset): the outcomes of one header are put
    in a dict, so a later ``dmarc=pass`` (here the envelope sender's local part, legal unquoted: "=" is
    atext) overwrites the ``dmarc=fail`` our server reported, and the forged mail is believed. Rspamd and
    Exim write dmarc before spf in one header."""
    from app.mailbox.parse import authenticated

    result = (
        f'{OURS}; dkim=none; dmarc=fail reason="no valid spf, no valid dkim" header.from=example.com '
        f"(policy=reject); spf=fail ({OURS}: domain of dmarc=pass@evil.test does not designate 192.0.2.1 as "
        "permitted sender) smtp.mailfrom=dmarc=pass@evil.test"
    )
    assert not authenticated([result], "", "sam@example.com")


def test_review2_a_real_dkim_pass_with_a_semicolon_in_its_comment_is_believed():
    """Finding D (low, availability): OpenDKIM writes ``dkim=pass (2048-bit key; unprotected) header.d=...``;
    the ";" in the comment cuts the verdict from its ``header.d``, so a genuine DKIM-aligned reply (DMARC
    not checked by our server) never threads itself."""
    from app.mailbox.parse import authenticated

    result = f"{OURS}; dkim=pass (2048-bit key; unprotected) header.d=example.com header.i=@example.com"
    assert authenticated([result], OURS, "sam@example.com")


def _sender(value: str):
    from app.mailbox.parse import sender

    raw = f"From: {value}\nTo: privacy@chatgpttech.test\n\nhi\n".encode()
    return sender(message_from_bytes(raw, policy=policy.default))


def test_review2_a_from_header_that_is_a_group_is_ambiguous():
    """Finding E (low): RFC 5322 From is a mailbox-list: a group (``name: addr;``) is not a mailbox, and
    verifiers and clients read such a header differently, yet ``sender`` believes it without a problem."""
    _, _, problem = _sender("Undisclosed: sam@example.com;")
    assert problem
