"""Command line (``flask --app wsgi ...``): staff, seed-demo, read-mailbox, dev.

``worker``, ``cron`` and ``reconcile`` are in ``workers/cli.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from app.extensions import db


def register_cli(app: Flask) -> None:
    app.cli.add_command(staff_group)
    app.cli.add_command(seed_demo_cmd)
    app.cli.add_command(read_mailbox_cmd)
    app.cli.add_command(dev_cmd)


@click.group("staff", help="Manage staff accounts.")
def staff_group() -> None:
    pass


@staff_group.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "officer", "auditor"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def staff_create(email: str, role: str, password_stdin: bool) -> None:
    from app.audit import Actor
    from app.staff import accounts
    from app.staff.mail import enrolment_link
    from app.staff.passwords import password_problem

    email = email.strip().lower()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password, email)
    if problem:
        raise click.ClickException(problem)
    try:
        user, enrol = accounts.create(email, role, password, Actor.system("cli"), temporary=False)
    except accounts.AccountError:
        raise click.ClickException(f"{email} already exists") from None
    db.session.commit()
    click.echo(f"created {role} {user.email}")
    if enrol:
        # Printed, not mailed: whoever runs this command has operator access, which is the proof.
        _echo_enrolment(role, enrolment_link(enrol))


def _echo_enrolment(role: str, link: str) -> None:
    hours = current_app.config["STAFF_ENROL_LINK_HOURS"]
    click.echo(f"two-step sign-in is required for {role}; set it up (once, within {hours} hours) at:")
    click.echo(f"  {link}")


@staff_group.command("enrolment-link")
@click.argument("email")
@with_appcontext
def staff_enrolment_link(email: str) -> None:
    """Print a new second-factor enrolment link (the account has lost its authenticator, or never had one)."""
    from app.audit import Actor
    from app.staff import second_factor
    from app.staff.mail import enrolment_link
    from app.staff.models import StaffUser

    user = db.session.execute(select(StaffUser).where(StaffUser.email == email.strip().lower())).scalar_one_or_none()
    if user is None or not user.active:
        raise click.ClickException(f"no active staff member {email}")
    if user.totp_enabled:  # the operator resets it: the old authenticator and recovery codes stop working
        raw = second_factor.reset(user, None)
    else:
        raw = second_factor.issue_enrolment(user, Actor.system("cli"))
    db.session.commit()
    _echo_enrolment(user.role, enrolment_link(raw))


@click.command("seed-demo", help="Demo staff logins and realistic platform data (idempotent).")
@click.option("--accounts", default=40, show_default=True, type=click.IntRange(1, 10000))
@click.option(
    "--usage-rows",
    default=None,
    type=click.IntRange(0, 50_000_000),
    help="Top the first (heavy) account up to this many usage rows.",
)
@with_appcontext
def seed_demo_cmd(accounts: int, usage_rows: int | None) -> None:
    from app.demo import DEMO_STAFF_PASSWORD, seed_demo

    if current_app.config["APP_ENV"] == "production":
        raise click.ClickException("seed-demo refuses to run with APP_ENV=production")
    started = time.monotonic()
    result = seed_demo(accounts=accounts, heavy_usage_rows=usage_rows)
    click.echo(
        f"accounts created: {result['accounts_created']}, usage rows inserted: "
        f"{result['usage_rows_inserted']} ({time.monotonic() - started:.1f}s)"
    )
    for key, value in result.items():
        if key not in ("staff", "accounts_created", "usage_rows_inserted"):
            click.echo(f"{key}: {value}")
    for email, role, _new in result["staff"]:
        click.echo(f"demo {role:8} login: {email} / {DEMO_STAFF_PASSWORD}")


@click.command("read-mailbox", help="Read new mail from MAIL_IMAP_URL now (cron does it every minute).")
@with_appcontext
def read_mailbox_cmd() -> None:
    from app.mailbox.services import MailboxError, read_mailbox

    try:
        summary = read_mailbox()
    except MailboxError as exc:
        raise click.ClickException(str(exc)) from None
    if not summary.get("configured"):
        raise click.ClickException("MAIL_IMAP_URL is not set")
    click.echo(", ".join(f"{k}: {v}" for k, v in summary.items() if k != "configured"))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _demo_billing_on_localstripe(port: int) -> None:
    """Wait for localstripe, then give the demo accounts Stripe customers there (billing in exports)."""
    import socket

    from app.demo import resync_dev_stripe

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    try:
        made = resync_dev_stripe()
    except Exception as exc:
        click.echo(f"  (localstripe demo data not created: {type(exc).__name__}: {exc})")
        return
    if made:
        click.echo(f"  localstripe: {made} demo Stripe customers created")


@click.command("dev", help="Embedded Redis, a worker, cron, localstripe and the web server, for local use.")
@click.option("--port", default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@with_appcontext
def dev_cmd(port: int, host: str) -> None:
    from app.demo import DEMO_STAFF_EMAIL, DEMO_STAFF_PASSWORD
    from app.queue import redis_url

    env = dict(os.environ)
    embedded = not env.get("REDIS_URL")
    # Start the embedded Redis now; the children find it, and its password, through instance/redis
    # (the password stays out of their environment).
    redis_url()
    # A person clicking through the demo signs in with the printed password alone, so the second-factor
    # requirement is off for `flask dev`'s children unless the operator set TOTP_REQUIRED_ROLES.
    totp_off = "TOTP_REQUIRED_ROLES" not in env
    if totp_off:
        env["TOTP_REQUIRED_ROLES"] = ""
    env.setdefault("PORTAL_BASE_URL", f"http://{host}:{port}")
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    children: list[subprocess.Popen] = []
    bindir = Path(sys.executable).parent
    if not env.get("STRIPE_API_KEY") and (bindir / "localstripe").exists():
        stripe_port = _free_port()  # never a fixed port that another program may hold
        children.append(
            subprocess.Popen(
                [str(bindir / "localstripe"), "--port", str(stripe_port), "--from-scratch"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        env["STRIPE_API_KEY"] = "sk_test_localstripe"
        env["STRIPE_API_BASE"] = f"http://127.0.0.1:{stripe_port}"
        current_app.config.update(STRIPE_API_KEY=env["STRIPE_API_KEY"], STRIPE_API_BASE=env["STRIPE_API_BASE"])
        _demo_billing_on_localstripe(stripe_port)
    # Each child leads a process group of its own, so stopping reaches what it started in turn (the rq
    # worker's scheduler process), and nothing of it is left talking to Redis once Redis is stopped.
    for command in (["worker"], ["cron"], ["run", "--host", host, "--port", str(port), "--no-reload"]):
        children.append(subprocess.Popen([*flask, *command], env=env, process_group=0))
    base = env["PORTAL_BASE_URL"]
    click.echo("")
    click.echo(f"  DSR portal:  {base}/")
    click.echo(f"  Staff login: {base}/admin/login  ({DEMO_STAFF_EMAIL} / {DEMO_STAFF_PASSWORD})")
    if totp_off:
        click.echo("               two-step sign-in is not required here (TOTP_REQUIRED_ROLES is empty for")
        click.echo("               flask dev; set TOTP_REQUIRED_ROLES=admin to try it, as production does)")
    if current_app.config.get("MAIL_SERVER") is None:
        click.echo(f"  Outbox:      {base}/admin/outbox  (mail is kept here, not sent)")
    from app.demo import demo_subjects

    subjects = demo_subjects()
    if subjects:
        click.echo(f"  Try a request as a demo subject with data in every category: {', '.join(subjects)}")
    click.echo("  Ctrl-C stops everything.")
    click.echo("")

    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.5)
    finally:
        for child in children:
            _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
            _signal_group(child.pid, signal.SIGKILL)  # whatever of its group outlived it
    if embedded:
        from app.redis_server import stop_embedded_redis

        stop_embedded_redis(Path(current_app.instance_path) / "redis")
    click.echo("stopped")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a process group, if any member of it is still there."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
