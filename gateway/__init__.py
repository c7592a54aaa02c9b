"""The checkout gateway: one Starlette app (`app.py`) over domain packages.

Domains: checkout, payments, webhooks, licenses, mail, pages. Plumbing they share: http,
ops, db. `cli` holds the operator commands, each a thin call into a domain service.
"""
