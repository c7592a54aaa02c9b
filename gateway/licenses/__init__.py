"""Licenses: keys, issuing one per paid order, seats, signed offline tokens and the license API.

The buyer's app calls the routes here; the issuer runs inside the payments transaction.
"""
