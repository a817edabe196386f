"""Request lifecycle: the statuses and the one table of allowed transitions (PRODUCT.md).

Only ``app.dsr.services.transition`` changes a request's status, and only along this table.
"""

from __future__ import annotations

from enum import StrEnum


class RequestStatus(StrEnum):
    UNVERIFIED = "unverified"
    PENDING_REVIEW = "pending_review"
    ON_HOLD = "on_hold"
    APPROVED = "approved"
    IN_PROGRESS = "in_progress"
    # An access package built and held for an officer to preview before its link goes out
    # (``ACCESS_REVIEW_BEFORE_RELEASE``).
    AWAITING_RELEASE = "awaiting_release"
    COMPLETED = "completed"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"


class RequestType(StrEnum):
    ACCESS = "access"
    CORRECTION = "correction"
    DELETION = "deletion"
    RESTRICTION = "restriction"  # GDPR Art. 18
    OBJECTION = "objection"  # GDPR Art. 21
    OPT_OUT = "opt_out"  # analytics, and sale or sharing (CCPA 1798.120); also Global Privacy Control


# Requests an officer decides and answers in their own words (what was restricted, whether the objection
# prevails): approving one needs that answer, which is the record the subject is sent.
STAFF_DECIDED = frozenset({RequestType.RESTRICTION, RequestType.OBJECTION})


class Jurisdiction(StrEnum):
    GDPR = "gdpr"
    CCPA = "ccpa"
    OTHER = "other"


class DenialReason(StrEnum):
    IDENTITY_NOT_VERIFIED = "identity_not_verified"
    AGENT_NOT_AUTHORISED = "agent_not_authorised"
    MANIFESTLY_UNFOUNDED = "manifestly_unfounded"
    EXCESSIVE = "excessive"
    SUSPECTED_FRAUD = "suspected_fraud"
    LEGAL_EXEMPTION = "legal_exemption"
    OTHER = "other"


# What each reason means, in plain words for the subject (GDPR Art. 12(4), CCPA regs 7022-7024).
DENIAL_EXPLANATIONS = {
    DenialReason.IDENTITY_NOT_VERIFIED: (
        "We must be sure a request comes from the person the data is about before we act on it, and we "
        "could not confirm that it does. To try again, make a new request from the email address you use "
        "with ChatGPTTech and confirm it with the link we send, or reply to this email with information "
        "that shows the account is yours (for example the prefix of one of your API keys, or the last four "
        "digits of the card on your invoices)."
    ),
    DenialReason.AGENT_NOT_AUTHORISED: (
        "The request was made on someone's behalf, and we did not receive proof that they gave permission "
        "for it (a signed permission, or their own confirmation). The person can make the request "
        "themselves, or the agent can send the signed permission and ask again."
    ),
    DenialReason.MANIFESTLY_UNFOUNDED: (
        "The request does not concern personal data we hold about you, or is clearly not a request to "
        "exercise a data protection right."
    ),
    DenialReason.EXCESSIVE: (
        "The request repeats an earlier one that we have answered, without anything having changed since."
    ),
    DenialReason.SUSPECTED_FRAUD: (
        "There are signs that the request was not made by the person the data is about, so acting on it "
        "could harm them."
    ),
    DenialReason.LEGAL_EXEMPTION: (
        "A legal exemption applies: the law requires or allows us to keep or withhold this data. The "
        "explanation below says which one."
    ),
    DenialReason.OTHER: "The explanation below gives the reason.",
}

DENIAL_LABELS = {
    DenialReason.IDENTITY_NOT_VERIFIED: "We could not verify your identity",
    DenialReason.AGENT_NOT_AUTHORISED: "We have no proof that the agent may act for you",
    DenialReason.MANIFESTLY_UNFOUNDED: "The request is manifestly unfounded",
    DenialReason.EXCESSIVE: "The request is excessive or repeats an earlier one",
    DenialReason.SUSPECTED_FRAUD: "We suspect the request is fraudulent",
    DenialReason.LEGAL_EXEMPTION: "A legal exemption applies",
    DenialReason.OTHER: "Other reason",
}

S = RequestStatus

ALLOWED: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.UNVERIFIED: frozenset({S.PENDING_REVIEW, S.CANCELLED, S.EXPIRED}),
    S.PENDING_REVIEW: frozenset({S.APPROVED, S.DENIED, S.ON_HOLD, S.CANCELLED}),
    S.ON_HOLD: frozenset({S.PENDING_REVIEW, S.APPROVED, S.DENIED, S.CANCELLED}),
    S.APPROVED: frozenset({S.IN_PROGRESS, S.FAILED}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.FAILED, S.AWAITING_RELEASE}),
    # Released (link sent), or built again after an officer released a withheld record.
    S.AWAITING_RELEASE: frozenset({S.COMPLETED, S.APPROVED}),
    S.FAILED: frozenset({S.APPROVED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.DENIED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}

OPEN = frozenset({S.UNVERIFIED, S.PENDING_REVIEW, S.ON_HOLD, S.APPROVED, S.IN_PROGRESS, S.AWAITING_RELEASE, S.FAILED})
CLOSED = frozenset(set(RequestStatus) - OPEN)
# What the subject may cancel from their status page.
SUBJECT_CANCELLABLE = frozenset({S.UNVERIFIED, S.PENDING_REVIEW, S.ON_HOLD})
# Statuses whose deadline clock is running (used by overdue / due-soon counts and reminders). A request
# on hold still goes overdue: only a lawful pause (``hold_pauses_clock``, GDPR identity) stops its clock,
# and the queries leave those out while the pause lasts.
CLOCK_RUNNING = frozenset({S.PENDING_REVIEW, S.ON_HOLD, S.APPROVED, S.IN_PROGRESS, S.AWAITING_RELEASE, S.FAILED})


STATUS_LABELS = {
    S.UNVERIFIED: "Waiting for email confirmation",
    S.PENDING_REVIEW: "Waiting for review",
    S.ON_HOLD: "On hold",
    S.APPROVED: "Approved",
    S.IN_PROGRESS: "Being carried out",
    S.AWAITING_RELEASE: "Package awaiting release",
    S.COMPLETED: "Completed",
    S.DENIED: "Denied",
    S.CANCELLED: "Cancelled",
    S.EXPIRED: "Expired (never confirmed)",
    S.FAILED: "Delayed by a technical problem",
}
