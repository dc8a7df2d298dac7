"""Typed SIP errors: each carries the status and reason to answer with."""

from __future__ import annotations


class SipError(Exception):
    """A request that must be answered with ``status`` and ``reason``.

    ``headers`` are extra header lines the response needs (e.g. Min-Expires,
    Unsupported, Allow, Retry-After).
    """

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers or []


class BadRequest(SipError):
    """Malformed input: answered ``400 Bad Request`` with a precise reason phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, reason)
