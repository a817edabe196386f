"""Scheduled maintenance jobs."""

from __future__ import annotations

from workers.context import job


@job
def reconcile_job() -> dict[str, int]:
    from workers.reconcile import reconcile

    return reconcile()
