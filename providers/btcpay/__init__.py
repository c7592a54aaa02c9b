"""BTCPay Server: the Greenfield provider (default) and the legacy BitPay-compatible one.

Client calls, webhook signature, payload shapes and event decisions each live in a module.
"""
