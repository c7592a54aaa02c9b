"""Checkout: what a product can be bought with, and starting a purchase.

`GET /purchase-options/{product}`, `POST /checkout/{provider}/{product}` with its idempotent
claim on the order, and the order status the buyer polls.
"""
