"""Staff accounts live in ``app.staff``; this re-export keeps ``from app.admin.models import ...`` working."""

from app.staff.models import Role, StaffUser  # noqa: F401
