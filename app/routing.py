"""URL converters registered on the whole app.

``<id:name>`` is a database id in a path: 1 to 2**31 - 1 (the range of the smallest integer primary
key we use, PostgreSQL's ``integer``), at most ten ASCII digits. Anything else does not match the
route, so it is a 404 before a view runs, never a 500 from a driver that cannot bind the number
("Python int too large to convert to SQLite INTEGER", "integer out of range").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.routing import IntegerConverter, Map

if TYPE_CHECKING:
    from flask import Flask

MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    regex = r"[0-9]{1,10}"

    def __init__(self, map: Map) -> None:
        super().__init__(map, min=1, max=MAX_ID)


def register_converters(app: Flask) -> None:
    """Before any blueprint is registered: rules resolve their converters when added."""
    app.url_map.converters["id"] = IdConverter
