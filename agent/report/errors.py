"""Failures of a self-report, each with a message a person can act on."""

from __future__ import annotations

from agent.errors import NetworkError


class ServerUnreachableError(NetworkError):
    """Connection refused, timed out or broken: the outcome may be unknown; retry later."""


class ServerFailureError(NetworkError):
    """The server answered with 5xx, 429 or an unreadable body; retry later."""

    def __init__(self, message: str, *, status: int = 0, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status (0: the answer was unreadable)."""
        self.retry_after = retry_after
        """The answer's ``Retry-After`` header, as sent (None: absent)."""


class RequestRefusedError(NetworkError):
    """The server refused the request for good (4xx); retrying the same request won't help."""

    def __init__(self, message: str, *, error_code: str = "", status: int = 400) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status = status
        self.after_lost_answer = False
        """An earlier try of the same request got no answer the server could not have
        acted on: that try may have taken effect."""


class VerificationCodeError(RequestRefusedError):
    """The verification code is malformed, unknown, expired or already used."""
