"""Expected wait time (EWT) per queue position.

For the caller at 1-based position ``k`` in a queue with ``n`` staffed agents (logged in, phone
registered, not paused) and an average handle time ``AHT`` (talk + wrap-up of the last ``history``
calls handled from this queue; ``default_handle_s`` before any)::

    EWT(k) = k * AHT / n

Undefined (``None``) when ``n == 0``: nobody can take the call, so no estimate is given.
"""

from __future__ import annotations

from collections import deque


class HandleTimes:
    """Rolling average of the last ``history`` handle times (talk + wrap-up), O(1) per call."""

    __slots__ = ("_default", "_sum", "_times")

    def __init__(self, history: int, default_s: float) -> None:
        self._times: deque[float] = deque(maxlen=max(1, history))
        self._sum = 0.0
        self._default = default_s

    def add(self, handle_s: float) -> None:
        times = self._times
        if len(times) == times.maxlen:
            self._sum -= times[0]
        times.append(handle_s)
        self._sum += handle_s

    @property
    def average(self) -> float:
        """AHT in seconds: the mean of the kept handle times, or the default before any."""
        n = len(self._times)
        return self._sum / n if n else self._default

    def __len__(self) -> int:
        return len(self._times)

    def check(self) -> None:
        assert abs(self._sum - sum(self._times)) < 1e-6 * max(1.0, abs(self._sum)), "handle-time sum drifted"


def expected_wait(position: int, staffed: int, aht: float) -> float | None:
    """``EWT(k) = k * AHT / n``; None when no agent is staffed."""
    if staffed <= 0:
        return None
    return position * aht / staffed
