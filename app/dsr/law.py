"""What each jurisdiction's law says, in one table: which provision each right and each refusal rests on,
where a person can complain, and what a notice must name.

Every letter, report and page to a subject takes its citations from here for the request's own law, so a
CCPA request is answered under the CCPA and never cites a GDPR article. "Other" requests get the GDPR's
clock (the strictest) but no citation of a law that may not apply to them. Supervisory authorities are
configurable (``SUPERVISORY_AUTHORITIES_GDPR`` / ``_CCPA`` / ``_OTHER``: ``name|url`` pairs separated by
``;``); the defaults name the EDPB's list of EU/EEA authorities, the UK ICO and the CPPA.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.dsr.states import Jurisdiction
from app.sources.inventory import AUTHORITIES


@dataclass(frozen=True)
class Authority:
    name: str
    url: str


@dataclass(frozen=True)
class Law:
    code: str
    name: str  # as it reads in a sentence: "the GDPR"
    # Provision of each right, by request type.
    rights: dict[str, str]
    # Exemption for what a legal obligation makes us keep after a deletion.
    legal_retention: str
    # Telling the recipients of erased data (processors) about the erasure.
    recipients_notice: str
    # The rule that a refusal must give reasons and name the remedies.
    refusal: str
    # The rule that allows one extension of the time limit.
    extension: str
    judicial_remedy: str
    authorities: tuple[Authority, ...]
    # The right to add a statement to data whose correction was refused (CCPA regs section 7023(f)).
    written_statement: str | None = None


# The defaults come from the data inventory (app/sources/inventory.toml), which names the authorities.
DEFAULT_AUTHORITIES = {
    j: tuple(Authority(name, url) for name, url in AUTHORITIES[j.value])
    for j in (Jurisdiction.GDPR, Jurisdiction.CCPA, Jurisdiction.OTHER)
}

LAWS: dict[Jurisdiction, Law] = {
    Jurisdiction.GDPR: Law(
        code="gdpr",
        name="the GDPR (EU and UK General Data Protection Regulation)",
        rights={
            "access": "Article 15 GDPR",
            "correction": "Article 16 GDPR",
            "deletion": "Article 17 GDPR",
            "restriction": "Article 18 GDPR",
            "objection": "Article 21 GDPR",
            "opt_out": "Article 21 GDPR",
        },
        legal_retention="Article 17(3)(b) GDPR (compliance with a legal obligation)",
        recipients_notice="Article 19 GDPR",
        refusal="Article 12(4) GDPR",
        extension="Article 12(3) GDPR",
        judicial_remedy=(
            "You also have the right to an effective judicial remedy: you can take the matter to the courts "
            "of the country where you live or where we are established (Articles 78 and 79 GDPR)."
        ),
        authorities=DEFAULT_AUTHORITIES[Jurisdiction.GDPR],
    ),
    Jurisdiction.CCPA: Law(
        code="ccpa",
        name="the California Consumer Privacy Act (CCPA)",
        rights={
            "access": "Cal. Civ. Code section 1798.110 (right to know)",
            "correction": "Cal. Civ. Code section 1798.106 (right to correct)",
            "deletion": "Cal. Civ. Code section 1798.105 (right to delete)",
            "restriction": "Cal. Civ. Code section 1798.121 (right to limit)",
            "objection": "Cal. Civ. Code section 1798.120 (right to opt out)",
            "opt_out": "Cal. Civ. Code section 1798.120 (right to opt out of sale or sharing)",
        },
        legal_retention="Cal. Civ. Code section 1798.105(d)(8) (compliance with a legal obligation)",
        recipients_notice="Cal. Civ. Code section 1798.105(c)(1) (notice to our service providers)",
        refusal="Cal. Code Regs. tit. 11, sections 7022 and 7024",
        extension="Cal. Civ. Code section 1798.130(a)(2)",
        judicial_remedy=(
            "You may also have rights you can enforce in the California courts where the law provides them."
        ),
        authorities=DEFAULT_AUTHORITIES[Jurisdiction.CCPA],
        written_statement=(
            "You may send us a written statement of up to 250 words saying why you believe the information is "
            "wrong; we will keep it with the information and show it to anyone we share it with "
            "(Cal. Code Regs. tit. 11, section 7023(f))."
        ),
    ),
    Jurisdiction.OTHER: Law(
        code="other",
        name="the data protection law that applies to you",
        rights={},
        legal_retention="a legal obligation to keep it",
        recipients_notice="",
        refusal="",
        extension="",
        judicial_remedy="You may also be able to take the matter to the courts where you live.",
        authorities=DEFAULT_AUTHORITIES[Jurisdiction.OTHER],
    ),
}


def _configured_authorities(jurisdiction: Jurisdiction) -> tuple[Authority, ...] | None:
    raw = current_app.config.get(f"SUPERVISORY_AUTHORITIES_{jurisdiction.value.upper()}")
    if not raw:
        return None
    found = []
    for pair in str(raw).split(";"):
        name, _, url = pair.partition("|")
        if name.strip():
            found.append(Authority(name.strip(), url.strip()))
    return tuple(found) or None


def law_for(jurisdiction: str | None) -> Law:
    """The law of a request, with the operator's supervisory authorities where configured."""
    try:
        j = Jurisdiction(jurisdiction or "other")
    except ValueError:
        j = Jurisdiction.OTHER
    law = LAWS[j]
    configured = _configured_authorities(j)
    if configured:
        law = Law(**{**law.__dict__, "authorities": configured})
    return law


def authority_lines(law: Law) -> list[str]:
    return [f"{a.name}: {a.url}" if a.url else a.name for a in law.authorities]
