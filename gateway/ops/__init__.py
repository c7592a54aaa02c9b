"""Operations: Prometheus metrics, log format and context, health checks, the provider proxy
that counts and times every call into a payment provider, and what the operator's commands
query (orders, the outbox).
"""
