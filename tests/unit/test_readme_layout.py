"""The README's layout table names every package of ``app/`` and ``workers/`` (issue 18)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Layout", 1)[1].split("\n## ", 1)[0]


def test_every_package_is_in_the_readme_layout():
    named = set(re.findall(r"`([a-z_/]+/)`", _layout_section()))
    packages = {f"{p.parent.relative_to(ROOT)}/" for p in ROOT.glob("app/*/__init__.py")} | {"workers/"}
    assert packages - named == set(), "packages missing from README.md's Layout table"
    assert {n for n in named if n.startswith("app/") and n != "app/"} - packages == set(), (
        "Layout names a package that is gone"
    )
