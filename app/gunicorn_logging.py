"""gunicorn's own log lines as JSON too: ``gunicorn --logger-class app.gunicorn_logging.Logger``.

Without it the app turns gunicorn's error and access logs into JSON once a worker has loaded it
(``app.logs``), but the master's few lines from before that (start, listening, booting workers) stay
text. With it, every line gunicorn writes follows ``LOG_FORMAT`` from the first.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.glogging import Logger as _GunicornLogger


def log_format() -> str:
    default = "json" if os.environ.get("APP_ENV") == "production" else "text"
    return (os.environ.get("LOG_FORMAT") or default).strip().lower()


class Logger(_GunicornLogger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if log_format() != "json":
            return
        from app.logs import JsonFormatter, install_request_id_factory
        from app.redact import install_record_factory

        install_request_id_factory(os.environ.get("REQUEST_ID_HEADER") or "X-Request-ID")
        install_record_factory()
        formatter = JsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
