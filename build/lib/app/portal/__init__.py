"""The public portal: intake, email verification, status page, cancel and download.

People using it have no account; the only credentials are the secrets in the links we email them.
"""
