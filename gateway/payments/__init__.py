"""Payments: the one apply path every normalised event takes, webhook or reconciler.

The order state machine and its transitions, the integrity checks that park an order for
review, and the reconciler that asks providers about orders their webhooks left unfinished.
"""
