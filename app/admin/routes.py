"""Wires the staff dashboard into the app: every route module attached to one blueprint, then registered."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach every admin view to the blueprint, then register it (called once by ``create_app``)."""
    # Importing the modules attaches their routes to ``bp``. Only this module imports them (never
    # ``views`` or the package), so they share helpers from ``views`` without an import cycle.
    from app.admin import (  # noqa: F401
        account,
        actions,
        auth,
        intake,
        mailbox,
        manage,
        outbox,
        packages,
        reports,
        staff,
        views,
    )
    from app.admin.guard import bp
    from app.extensions import login_manager

    login_manager.login_view = "admin.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.session_protection = "strong"
    app.register_blueprint(bp)
