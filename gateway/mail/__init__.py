"""Mail: the license and recovery messages, and the outbox sender that delivers them.

Emails are rows written in the same transaction as the license; the sender retries them
through a transport (SMTP, or a console/file backend for development).
"""
