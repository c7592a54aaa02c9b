"""HTTP plumbing every route uses: the error table, body and rate limits, form origins,
content negotiation, security headers, request ids, CORS and JSON decoding. No domain
logic lives here.
"""
