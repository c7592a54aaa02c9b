"""Mail: the license and recovery messages, the outbox sender that delivers them, and the
outbox as the operator sees it (`queue`: list, queue dead emails again).

Emails are rows written in the same transaction as the license; the sender retries them
through a transport (SMTP, or a console/file backend for development).
"""
