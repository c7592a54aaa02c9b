"""Checkout: what a product can be bought with, starting a purchase, and its status.

`routes` (thin handlers and `ROUTES`) call `service` (the order and its provider checkout),
`claim` (the idempotent claim on an order), `options` (the purchase-options document) and
`orders` (the order status a buyer polls).
"""
