"""The mailbox behind an address, for rate limits: one mailbox, one limit, however it is spelled.

Case never matters; ``+tag`` subaddressing is dropped for the providers that deliver it to the same
mailbox; Gmail also ignores dots in the local part, and ``googlemail.com`` is ``gmail.com``. This is a
limit key only: requests keep the address exactly as the person gave it. (The PyPI packages that do
this look providers up by DNS at run time; a fixed table needs no network and is enough for a limit.)
"""

from __future__ import annotations

# Providers whose mail servers deliver ``local+tag@`` to ``local@``.
PLUS_TAGS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "fastmail.com",
        "fastmail.fm",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "yandex.com",
        "yandex.ru",
        "zoho.com",
        "gmx.com",
        "gmx.de",
        "posteo.de",
        "mailbox.org",
        "tutanota.com",
    }
)
# Providers that ignore dots in the local part.
DOTLESS = frozenset({"gmail.com", "googlemail.com"})
ALIASES = {"googlemail.com": "gmail.com"}


def normalise_mailbox(email: str) -> str:
    local, _, domain = (email or "").strip().lower().rpartition("@")
    if not local:
        return (email or "").strip().lower()
    domain = domain.rstrip(".")
    if domain in PLUS_TAGS:
        local = local.split("+", 1)[0]
    if domain in DOTLESS:
        local = local.replace(".", "")
    return f"{local}@{ALIASES.get(domain, domain)}"
