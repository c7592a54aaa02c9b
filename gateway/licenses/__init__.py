"""Licenses: keys, issuing one per paid order, comps, seats, signed offline tokens, the
operator's actions (revoke, reinstate, resend) and the license API.

The buyer's app calls the routes here; the issuer runs inside the payments transaction.
"""
