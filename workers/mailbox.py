"""The privacy mailbox job: read new mail (``app.mailbox.services.read_mailbox``), every minute from cron.

Safe to run twice at once or again after a kill: each message is recorded once (unique keys), and a
message is deleted from the server only after the commit that recorded it.
"""

from __future__ import annotations

from flask import current_app

from app.mailbox.services import MailboxError, read_mailbox
from app.redact import redact_all
from workers.context import job
from workers.maintenance import scheduled


@job
@scheduled
def read_mailbox_job() -> dict:
    try:
        return read_mailbox()
    except MailboxError as exc:
        current_app.logger.warning("privacy mailbox: %s", redact_all(str(exc)))
        raise
