"""Operations: Prometheus metrics, log format and context, health checks, and the provider
proxy that counts and times every call into a payment provider.
"""
