"""The error answer of the test servers: an HTTP status, a protocol error code, a message."""

from __future__ import annotations


class ApiRefusal(Exception):
    """A request the server refuses; becomes ``{"error": message, "errorCode": code}``."""

    def __init__(self, status: int, code: str, message: str, retry_after: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        """``Retry-After`` header value of a 429, else empty."""
