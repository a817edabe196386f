"""Which passwords staff may choose: long enough, and not easy to guess.

Guessability is zxcvbn's estimate (Dropbox's estimator, with its lists of common and leaked
passwords, names, words and keyboard patterns), given the account's own email as a word to avoid.
A score of 3 of 4 ("safely unguessable: moderate protection from offline slow-hash scenario") is
required everywhere a staff password is set: ``flask staff create`` and the password change page.
Temporary passwords from an admin are random (``secrets``) and never pass through here.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

MIN_LENGTH = 12
MAX_LENGTH = 1024
MIN_SCORE = 3
# zxcvbn refuses longer input (its matching is quadratic); a prefix scoring well means the whole does.
SCORED_PREFIX = 72
PRODUCT_WORDS = ("chatgpttech", "privacy", "dashboard", "admin", "officer", "auditor", "staff")


def password_problem(password: str, email: str | None = None) -> str | None:
    """Why ``password`` is refused, in words the person can act on; None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    words = list(PRODUCT_WORDS)
    if email:
        local, _, domain = email.lower().partition("@")
        words += [email.lower(), local, *local.replace("-", ".").replace("_", ".").split("."), domain]
    result = zxcvbn(password[:SCORED_PREFIX], user_inputs=[w for w in words if w])
    if result["score"] >= MIN_SCORE:
        return None
    feedback = result.get("feedback") or {}
    reasons = " ".join(filter(None, [feedback.get("warning"), *(feedback.get("suggestions") or [])]))
    return (
        "This password is too easy to guess: it is common, leaked or built from a pattern or your own "
        f"details (strength {result['score']} of 4; {MIN_SCORE} needed). "
        + (reasons + " " if reasons else "")
        + "A few unrelated words, or a password manager's random password, will do."
    )
