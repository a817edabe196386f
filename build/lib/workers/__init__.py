"""RQ job functions (ids in, idempotent), the worker's app context, and the cron schedule."""
