"""The data inventory: what the platform holds about a person, written from the privacy policy.

One entry per category. It drives the access package's README (what, why, legal basis, recipients,
retention, source), the deletion plan (the erasure rule and its reason) and the retention sweep
(``retention_days``). Adding a data source is one connector module plus one entry here.
Policy references are to ``privacy-policy.txt`` (effective 5 May 2025).
"""

from __future__ import annotations

from dataclasses import dataclass

GA_OPT_OUT_URL = "https://tools.google.com/dlpage/gaoptout"
COMPLAINT_URL = "https://edpb.europa.eu/about-edpb/about-edpb/members_en"
PRIVACY_CONTACT = "privacy@chatgpttech.mobi"


@dataclass(frozen=True)
class Retained:
    """Records of a category we must keep after a deletion, and why: listed in every deletion report."""

    kind: str  # "Invoices"
    contains: str  # what the record holds about the person
    obligation: str  # the law that makes us keep it
    period: str  # how long

    def sentence(self) -> str:
        return f"{self.kind} ({self.contains}) are kept for {self.period} because {self.obligation}."


@dataclass(frozen=True)
class Category:
    name: str  # file stem in the access package, e.g. ``usage_logs`` -> usage_logs.json / .csv
    title: str
    source: str  # connector key in app.sources.SOURCES; "" when we hold nothing identifiable
    location: str
    fields: tuple[str, ...]  # exported fields, in order (an allowlist: nothing else leaves)
    purpose: str
    legal_basis: str
    recipients: str
    retention: str
    erasure: str  # delete / anonymise / keep / none
    erasure_reason: str
    retention_days: int | None = None
    exported: bool = True
    policy_ref: str = ""
    retained: tuple[Retained, ...] = ()


INVENTORY: tuple[Category, ...] = (
    Category(
        name="account",
        title="Account",
        source="account",
        location="ChatGPTTech platform database",
        fields=("id", "email", "name", "company", "created_at", "status", "closed_at", "analytics_opt_out"),
        purpose="Providing and operating your API account; contacting you about service and security.",
        legal_basis="Contract (GDPR Art. 6(1)(b)).",
        recipients="Cloud infrastructure providers (hosting and storage).",
        retention="For as long as the account is active; deleted or anonymised within 30 days of closure.",
        erasure="delete",
        erasure_reason="Deleted on request and 30 days after the account is closed (policy section 6).",
        policy_ref="2.2, 6",
    ),
    Category(
        name="api_keys",
        title="API keys",
        source="api_keys",
        location="ChatGPTTech platform database",
        fields=("id", "name", "prefix", "created_at", "last_used_at", "revoked_at"),
        purpose="Authenticating your API requests. Keys are stored only as hashes; the hash is never exported.",
        legal_basis="Contract (GDPR Art. 6(1)(b)).",
        recipients="Cloud infrastructure providers (hosting and storage).",
        retention="For as long as the account is active.",
        erasure="delete",
        erasure_reason="Revoked first so they stop working at once, then deleted.",
        policy_ref="2.2, 8",
    ),
    Category(
        name="usage_logs",
        title="API usage logs",
        source="usage",
        location="ChatGPTTech platform database",
        fields=("id", "created_at", "model", "prompt_tokens", "completion_tokens", "request_id", "key_prefix"),
        purpose="Billing, debugging and abuse prevention.",
        legal_basis="Contract (GDPR Art. 6(1)(b)) and legitimate interest in preventing abuse (Art. 6(1)(f)).",
        recipients="Cloud infrastructure providers (hosting and storage).",
        retention="12 months, then deleted automatically.",
        erasure="delete",
        erasure_reason="Deleted in batches.",
        retention_days=365,
        policy_ref="2.2, 6",
    ),
    Category(
        name="support_messages",
        title="Support correspondence",
        source="support",
        location="ChatGPTTech platform database",
        fields=("id", "sent_at", "direction", "email", "subject", "body"),
        purpose="Answering your questions and improving our support.",
        legal_basis="Legitimate interest in answering and keeping a record of correspondence (GDPR Art. 6(1)(f)).",
        recipients="Cloud infrastructure providers (hosting and storage).",
        retention="For as long as needed to handle your inquiry; deleted on request.",
        erasure="delete",
        erasure_reason="Deleted, whether or not the messages are linked to an account.",
        policy_ref="2.3",
    ),
    Category(
        name="billing",
        title="Billing (Stripe)",
        source="stripe",
        location="Stripe, Inc. (our payment processor)",
        fields=(
            "record_type",
            "id",
            "created",
            "name",
            "email",
            "status",
            "amount",
            "currency",
            "description",
            "brand",
            "last4",
            "exp_month",
            "exp_year",
            "number",
            "plan",
        ),
        purpose="Calculating and processing payment for API usage. We never store full card numbers.",
        legal_basis="Contract (GDPR Art. 6(1)(b)); invoices and charges: legal obligation (Art. 6(1)(c)).",
        recipients="Stripe, Inc. (payment processing and billing).",
        retention=(
            "Customer record and payment methods: while the account is active. "
            "Invoices and charges: as long as tax and accounting law requires (up to 10 years)."
        ),
        erasure="delete",
        erasure_reason=(
            "Subscriptions are cancelled, payment methods removed and the Stripe customer deleted; invoices "
            "and charges are kept because tax and accounting law requires us to keep them."
        ),
        policy_ref="2.2, 5",
        retained=(
            Retained(
                kind="Invoices",
                contains="your name, email and billing address as they were on the invoice, the services and "
                "amounts billed, dates and tax",
                obligation="tax and accounting law requires businesses to keep their invoices",
                period="10 years from the end of the year they were issued in",
            ),
            Retained(
                kind="Charges",
                contains="the amount, currency and date of each payment, and the card's brand and last four digits",
                obligation="accounting law requires businesses to keep the records of payments they received",
                period="10 years from the end of the year of the payment",
            ),
        ),
    ),
    Category(
        name="analytics",
        title="Website analytics (Google Analytics)",
        source="",
        location="Google LLC (Google Analytics via Google Tag Manager)",
        fields=(),
        purpose=(
            "Understanding how visitors use our website: anonymised IP address, browser and device, pages "
            "visited, referral source, country or city. We do not use it to identify you and cannot link "
            "it to your email address, so it is not part of this package."
        ),
        legal_basis="Consent to analytics cookies (GDPR Art. 6(1)(a)).",
        recipients="Google LLC.",
        retention="Google Analytics' default retention settings.",
        erasure="none",
        erasure_reason=(
            "Not identifiable by us, so we cannot find or delete it. You can block it with your browser's "
            f"cookie controls or the Google Analytics opt-out add-on: {GA_OPT_OUT_URL}"
        ),
        exported=False,
        policy_ref="2.1, 4, 7",
    ),
)

BY_NAME = {c.name: c for c in INVENTORY}
EXPORTED = tuple(c for c in INVENTORY if c.exported)


def category(name: str) -> Category:
    return BY_NAME[name]
