"""Prometheus metrics, computed at scrape time from the shared state (the database and Redis), so every
gunicorn worker answers the same figures and no multiprocess files are needed.

Requests by status and type, the overdue count, queue depths and failed jobs per queue, mail by status,
downloads, and each scheduled job's last success (seconds since the epoch).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from app.extensions import db
from app.models_base import utcnow


class PortalCollector:
    def collect(self) -> Iterator[Metric]:
        from app.dsr.models import DsrRequest, Export, clock_running
        from app.mail.models import OutgoingMail
        from app.schedule import last_successes

        now = utcnow()
        by_status = GaugeMetricFamily("dsr_requests", "Requests by status and type", labels=["status", "type"])
        for status, kind, n in db.session.execute(
            select(DsrRequest.status, DsrRequest.request_type, func.count()).group_by(
                DsrRequest.status, DsrRequest.request_type
            )
        ):
            by_status.add_metric([status, kind], n)
        yield by_status
        overdue = db.session.execute(select(func.count()).where(clock_running(), DsrRequest.due_at < now)).scalar_one()
        yield GaugeMetricFamily("dsr_requests_overdue", "Open requests past their deadline", value=overdue)
        mail = GaugeMetricFamily("dsr_mail", "Stored mail by status", labels=["status"])
        for status, n in db.session.execute(select(OutgoingMail.status, func.count()).group_by(OutgoingMail.status)):
            mail.add_metric([status], n)
        yield mail
        from app.mailbox.models import InboundMail

        inbound = GaugeMetricFamily(
            "dsr_inbound_mail", "Mail read from the privacy mailbox by status", labels=["status"]
        )
        for status, n in db.session.execute(select(InboundMail.status, func.count()).group_by(InboundMail.status)):
            inbound.add_metric([status], n)
        yield inbound
        downloads = db.session.execute(select(func.coalesce(func.sum(Export.download_count), 0))).scalar_one()
        yield GaugeMetricFamily("dsr_downloads", "Export downloads counted", value=int(downloads))
        jobs = GaugeMetricFamily("dsr_scheduled_job_last_success", "Last success of a scheduled job", labels=["job"])
        for name, when in last_successes().items():
            jobs.add_metric([name], when.timestamp())
        yield jobs
        yield from self._queues()
        db.session.remove()

    @staticmethod
    def _queues() -> Iterator[Metric]:
        import redis

        from app.queue import QUEUE_NAMES, get_queue

        depth = GaugeMetricFamily("dsr_queue_depth", "Jobs waiting per queue", labels=["queue"])
        failed = GaugeMetricFamily("dsr_queue_failed", "Failed jobs kept per queue", labels=["queue"])
        try:
            for name in QUEUE_NAMES:
                queue = get_queue(name)
                depth.add_metric([name], queue.count)
                failed.add_metric([name], queue.failed_job_registry.count)
        except redis.RedisError:
            return
        yield depth
        yield failed


def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PortalCollector())
    return reg
