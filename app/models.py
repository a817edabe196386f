"""Every model, imported in one place so the metadata is complete."""

from app.audit.models import AuditEvent
from app.dsr.models import (
    AppSetting,
    CorrectionItem,
    DsrRequest,
    Export,
    RequestIdentifier,
    RequestMessage,
    RequestNote,
    Token,
)
from app.mail.models import OutgoingMail
from app.mailbox.models import InboundMail
from app.platform.models import Account, ApiKey, SupportMessage, UsageRecord
from app.staff.models import RecoveryCode, Role, StaffSession, StaffToken, StaffUser

__all__ = [
    "Account",
    "ApiKey",
    "AppSetting",
    "AuditEvent",
    "CorrectionItem",
    "DsrRequest",
    "Export",
    "InboundMail",
    "OutgoingMail",
    "RecoveryCode",
    "RequestIdentifier",
    "RequestMessage",
    "RequestNote",
    "Role",
    "StaffSession",
    "StaffToken",
    "StaffUser",
    "SupportMessage",
    "Token",
    "UsageRecord",
]
