"""Inbound provider webhooks: raw bytes to the provider, its events to the apply path.

The route stays thin; the service does the work. Also the alarm that notices a webhook
secret that no longer matches.
"""
