"""The staff dashboard: login, roles, queue, request detail and actions, reports, audit log, staff.

Every view hangs off one blueprint (``app.admin.guard.bp``) whose single ``before_request`` guard
denies by default: a view is reachable only when it declares its minimum role with ``@requires``.
"""
