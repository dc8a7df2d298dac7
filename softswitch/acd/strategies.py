"""Agent picking per queue: a heap of eligible members keyed by the queue's strategy.

Lazy deletion: every agent carries an ``epoch`` that the core bumps on each state or registration
change; a heap entry is live only while its epoch equals the agent's. The core pushes an entry into
each member queue's heap when the agent becomes eligible (available + registered), so picking is
O(log n) amortised. Keys (smallest first):

- longest_idle, ring_all: ``idle_since`` (ring_all rings every eligible member; the heap serves callbacks)
- round_robin: (last ring sequence from this queue, member index)
- fewest_calls: (calls answered from this queue, idle_since)
- least_talk_time: (talk seconds from this queue, idle_since)
- skills: (-skill level, idle_since)
- random: a draw from the injected generator at push time
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Container
from typing import Generic, Protocol, TypeVar

from .settings import Strategy

Key = tuple[float, ...]


class Member(Protocol):
    """What the heap and the key functions read from an agent."""

    @property
    def id(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def idle_since(self) -> float: ...
    @property
    def rr(self) -> dict[str, int]: ...
    @property
    def qcalls(self) -> dict[str, int]: ...
    @property
    def qtalk(self) -> dict[str, float]: ...
    @property
    def level(self) -> dict[str, int]: ...
    @property
    def index(self) -> dict[str, int]: ...


A = TypeVar("A", bound=Member)


def key_function(strategy: Strategy, queue: str, rng: random.Random) -> Callable[[Member], Key]:
    """The heap key of an agent for ``queue`` under ``strategy`` (evaluated when the agent is pushed)."""
    if strategy is Strategy.ROUND_ROBIN:
        return lambda a: (a.rr.get(queue, 0), a.index[queue])
    if strategy is Strategy.FEWEST_CALLS:
        return lambda a: (a.qcalls.get(queue, 0), a.idle_since)
    if strategy is Strategy.LEAST_TALK_TIME:
        return lambda a: (a.qtalk.get(queue, 0.0), a.idle_since)
    if strategy is Strategy.SKILLS:
        return lambda a: (-a.level[queue], a.idle_since)
    if strategy is Strategy.RANDOM:
        return lambda a: (rng.random(),)
    return lambda a: (a.idle_since,)  # LONGEST_IDLE, RING_ALL


class AgentHeap(Generic[A]):
    """Eligible members of one queue, best first, with lazy deletion by epoch."""

    __slots__ = ("_heap", "_key", "_n", "members")

    def __init__(self, key: Callable[[Member], Key]) -> None:
        self._heap: list[tuple[Key, int, int, A]] = []
        self._key = key
        self._n = 0
        self.members = 0  # set by the core: compaction threshold

    def push(self, agent: A) -> None:
        self._n += 1
        heapq.heappush(self._heap, (self._key(agent), self._n, agent.epoch, agent))
        if len(self._heap) > 2 * self.members + 64:
            self.compact()

    def pick(self, skip: Container[str]) -> A | None:
        """Pop the best live agent whose id is not in ``skip``; else the best live one in ``skip``."""
        heap = self._heap
        skipped: list[tuple[Key, int, int, A]] = []
        found: A | None = None
        while heap:
            entry = heap[0]
            agent = entry[3]
            if entry[2] != agent.epoch:
                heapq.heappop(heap)
            elif agent.id in skip:
                skipped.append(heapq.heappop(heap))
            else:
                found = agent
                heapq.heappop(heap)
                break
        if skipped:
            if found is None:
                found = skipped.pop(0)[3]
            for entry in skipped:
                heapq.heappush(heap, entry)
        return found

    def compact(self) -> None:
        """Drop stale entries (O(n); amortised over the pushes that made them)."""
        self._heap = [e for e in self._heap if e[2] == e[3].epoch]
        heapq.heapify(self._heap)

    def live(self) -> list[A]:
        """Agents with a live entry (for invariant checks)."""
        return [e[3] for e in self._heap if e[2] == e[3].epoch]

    def __len__(self) -> int:
        return len(self._heap)
