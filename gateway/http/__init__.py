"""HTTP plumbing every route uses: the error table, body and rate limits, the origin rule,
content negotiation, security headers, request ids, CORS and JSON decoding. No domain
logic lives here.
"""
