"""Staff: accounts, roles, sessions, sign-in throttling and the second factor.

The admin web layer (``app.admin``) and the workers both use it; its services hold the rules (who
may sign in, when a session ends, what a second factor needs), the views only parse and render.
"""
