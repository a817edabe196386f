"""The privacy mailbox (``MAIL_IMAP_URL``): mail to the privacy address, read by a cron job.

A reply to one of our messages joins its request's thread (``services.thread_or_intake``); any other
message waits on the dashboard as an intake item that staff turn into a request or dismiss.
"""
