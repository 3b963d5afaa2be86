"""Self-report after a positive test: verification code -> certificate -> publish.

``client`` runs the upload flow of ``docs/gaen-spec.md`` §5 (Google verification server
and key server protocol), ``hmac`` computes the TEK HMAC that binds the keys to the
verification certificate (§5.3), ``padding`` pads every request body to a fixed size and
``chaff`` sends decoy flows that look the same on the wire (threats doc T7).
"""
