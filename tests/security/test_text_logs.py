"""LOG_FORMAT=text (development's default, and production's when chosen) redacts as JSON mode does: a
link token or an address in an exception's message never reaches a text line, whichever handler and
formatter write it (Flask's default handler, rq's, a plain StreamHandler), traceback and stack included."""

from __future__ import annotations

import io
import logging
import secrets

import pytest

from tests.conftest import make_config


@pytest.fixture
def app_config(migrated, redis_url, tmp_path):
    return make_config(migrated, redis_url, tmp_path, LOG_FORMAT="text")


def test_text_log_traceback_of_a_failed_request_holds_no_token_or_address(app, caplog):
    secret = secrets.token_urlsafe(32)

    @app.get("/_test/fail")
    def _fail():
        raise RuntimeError(f"boom at /download/{secret} for ada@example.com")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    with caplog.at_level(logging.INFO):
        assert app.test_client().get("/_test/fail").status_code == 500
    err = caplog.text  # Flask's handler stands aside for pytest's: the same text formatter
    assert "Traceback" in err and "RuntimeError: boom at /download/[redacted] for [address]" in err
    assert secret not in err and "ada@example.com" not in err


def _handler(formatter: logging.Formatter) -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    return handler, stream


@pytest.mark.parametrize("logger_name", ["rq.worker", "gunicorn.error", "app", "some.library"])
def test_text_log_exception_and_stack_are_redacted_under_any_handler(app, logger_name):
    secret = secrets.token_urlsafe(32)
    logger = logging.getLogger(logger_name)
    handler, stream = _handler(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"token={secret} belongs to zebulon.quax@example.org")
        except ValueError:
            logger.exception("job for %s failed", "zebulon.quax@example.org")
        logger.warning("where it was", stack_info=True, extra={"note": secret})
        try:
            raise KeyError(f"/verify/{secret}")
        except KeyError as exc:
            logger.error("lookup failed", exc_info=exc)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "ValueError: token=[redacted] belongs to [address]" in text
    assert "job for [address] failed" in text and "KeyError" in text and "/verify/[redacted]" in text
    assert "Stack (most recent call last)" in text
    assert secret not in text and "zebulon" not in text
