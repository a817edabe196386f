"""The access package: a streamed zip of README.html, JSON + CSV per category and manifest.json."""

from app.exports.writer import SCHEMA_VERSION, PackageResult, build_package

__all__ = ["SCHEMA_VERSION", "PackageResult", "build_package"]
