"""Self-report after a positive test: verification code -> certificate -> publish.

``client`` runs the upload flow of Google's verification server and key server
(google/exposure-notifications-verification-server ``pkg/api/api.go``,
google/exposure-notifications-server ``pkg/api/v1/exposure_types.go``), ``hmac``
computes the TEK HMAC that binds the keys to the verification certificate, ``padding``
pads every request body to a fixed size and ``chaff`` sends decoy flows that look the
same on the wire.
"""
