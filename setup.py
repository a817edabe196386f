"""Packaging beyond pyproject.toml (which holds the metadata and dependencies): the top-level
``templates/`` and ``migrations/`` ship inside the wheel as ``app/_templates`` and ``app/_migrations``,
the static files as package data, and ``wsgi`` as a module, so an installed wheel runs on its own
(``create_app`` finds them there when there is no checkout around it)."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def tree(directory: str) -> list[str]:
    base = ROOT / directory
    return [str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


setup(
    py_modules=["wsgi"],
    packages=[*find_packages(include=["app*", "workers*"]), "app._templates", "app._migrations"],
    package_dir={"app._templates": "templates", "app._migrations": "migrations"},
    package_data={
        "app": ["static/**/*", "sources/*.toml"],
        "app._templates": tree("templates"),
        "app._migrations": tree("migrations"),
    },
)
