"""Identifiers the stack draws (tags, branches, Call-IDs), from an injectable source."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable

BRANCH_COOKIE = "z9hG4bK"


class IdGenerator:
    """Random tokens by default; pass ``token`` for deterministic tests."""

    def __init__(self, token: Callable[[], str] | None = None) -> None:
        self._token = token or (lambda: secrets.token_hex(8))

    def tag(self) -> str:
        return self._token()

    def branch(self) -> str:
        return BRANCH_COOKIE + self._token()

    def call_id(self, host: str) -> str:
        return f"{self._token()}{self._token()}@{host}"


def counter_ids(prefix: str = "id") -> IdGenerator:
    """A deterministic generator: ``id1``, ``id2``, ... (for tests)."""
    count = itertools.count(1)
    return IdGenerator(lambda: f"{prefix}{next(count)}")
