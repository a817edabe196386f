"""Resend and lookup: whatever the address holds, the web request does the same work.

The page answers at once and identically for every address; the looking up and the mailing happen in a
job (``workers.portal``), keyed by the address's keyed hash (``app.dsr.minimise.email_hash``), so neither
the answer nor its timing says whether we know the address, and the job's arguments in Redis carry no
address.
"""

from __future__ import annotations

from app.hashing import email_hash
from app.queue import PendingJob, enqueue_now


def _enqueue(kind: str, email: str) -> None:
    digest = email_hash(email)
    enqueue_now(
        PendingJob(
            queue="mail",
            func="workers.portal.send_links",
            args=(kind, digest),
            options={"result_ttl": 0, "failure_ttl": 3600},
        )
    )


def enqueue_resend(email: str) -> None:
    """A new confirmation link for the address's newest unconfirmed request, if it has one."""
    _enqueue("verify", email)


def enqueue_lookup(email: str) -> None:
    """The status link of every open request of the address, emailed again."""
    _enqueue("status", email)
