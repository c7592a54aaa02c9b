"""Shared test helpers, imported by test modules and conftest (never the other way round):
the app in-process, catalogs, databases, issuer orders and events, licenses, processes, Stripe."""
