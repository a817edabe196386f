"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi ...``."""

import sys

from app import create_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:  # one clear line, not a traceback: the operator fixes the environment
    sys.exit(f"dsr-portal: configuration error: {exc}")
