"""The demo's people: names and deterministic addresses (``seed-demo`` and the demo requests share them)."""

from __future__ import annotations

FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "Tim",
    "Hedy",
    "Linus",
    "Katherine",
    "John",
    "Sophie",
    "Niklaus",
    "Anita",
    "Guido",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "Torvalds",
    "Johnson",
    "McCarthy",
    "Wilson",
    "Wirth",
    "Borg",
    "van Rossum",
]


def demo_email(i: int) -> str:
    first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
    return f"{first}.{last}{i // len(FIRST) or ''}@example.com".lower().replace(" ", "")
