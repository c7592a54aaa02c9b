"""Payments: the one apply path every normalised event takes, webhook or reconciler.

`apply` (the transaction), `transitions` (the order state machine, one row per event type),
`integrity` (the checks that park an event or an order for review), `inbox`, `review` (what
needs a human and the decision), the `reconciler` with its `schedule`, and `orders` (the
operator's listings of orders).
"""
