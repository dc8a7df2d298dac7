"""Internal records of the ACD core: agents, callers and queues (mutable, slotted)."""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from .events import AgentState
from .ewt import HandleTimes
from .settings import AgentSettings, QueueSettings, Strategy
from .strategies import AgentHeap, key_function

# call states (ints: compared on hot paths); DIALING: a callback answered by the agent, customer being dialed
WAITING, RINGING, CONNECTED, DIALING = range(4)
CALL_STATE_NAMES = ("waiting", "ringing", "connected", "dialing")
T_WRAP, T_WAIT, T_RING = range(3)  # timer kinds
Seq = tuple[float, int]  # a caller's place: (join time, global join number)


def secs(seconds: float) -> str:
    """Seconds as the queue log writes them: a rounded integer."""
    return str(round(seconds))


class AgentRec:
    """An agent as the core tracks it."""

    __slots__ = (
        "call",
        "calls",
        "epoch",
        "ext",
        "id",
        "idle_since",
        "index",
        "level",
        "login_at",
        "misses",
        "pending_logout",
        "pending_pause",
        "present",
        "qcalls",
        "qtalk",
        "queues",
        "reason",
        "registered",
        "ring_all",
        "rr",
        "since",
        "staffed",
        "state",
        "wrap_tok",
    )  # fmt: skip

    def __init__(self, s: AgentSettings) -> None:
        self.id = s.id
        self.ext = s.extension
        self.state = AgentState.LOGGED_OUT
        self.since = 0.0
        self.reason = ""
        self.registered = False
        self.epoch = 0
        self.call: CallRec | None = None
        self.misses = 0
        self.pending_pause: str | None = None
        self.pending_logout = False
        self.idle_since = 0.0
        self.login_at = 0.0
        self.queues: list[QueueRec] = []
        self.ring_all: list[QueueRec] = []  # member queues with the ring_all strategy
        self.level: dict[str, int] = {}
        self.index: dict[str, int] = {}
        self.rr: dict[str, int] = {}
        self.qcalls: dict[str, int] = {}
        self.qtalk: dict[str, float] = {}
        self.calls = 0
        self.wrap_tok = 0
        self.present = False  # logged in and registered
        self.staffed = False  # present and not paused


class CallRec:
    """A caller in a queue (waiting, ringing, connected or a callback being dialed)."""

    __slots__ = (
        "agent", "answered_at", "callback", "caller", "connected_at", "done", "id", "joined_at", "missed",
        "origpos", "q", "ring_started", "ring_tok", "ringing", "seq", "state", "timeout_at", "vip",
    )  # fmt: skip

    def __init__(self, call_id: str, q: QueueRec, vip: bool, caller: str, seq: Seq, now: float) -> None:
        self.id = call_id
        self.q = q
        self.vip = vip and q.s.vip_priority  # placed in the VIP class
        self.caller = caller
        self.seq = seq
        self.joined_at = now
        self.origpos = 0
        self.state = WAITING
        self.ringing: list[AgentRec] = []
        self.ring_started = now
        self.ring_tok = 0
        self.missed: set[str] = set()
        self.agent: AgentRec | None = None
        self.answered_at = now
        self.connected_at = now
        self.callback: str | None = None  # the number to call back
        self.timeout_at = now + q.s.max_wait_s if q.s.max_wait_s > 0 else float("inf")
        self.done = False


class QueueRec:
    """A queue: members, eligible-agent heap, waiting lists, counters and handle times."""

    __slots__ = (
        "abandoned", "by_seq", "cb_failed", "connected", "dialing", "eligible", "entered", "exited", "heap",
        "members", "name", "normal", "present", "refused", "ringing", "s", "staffed", "timed_out",
        "times", "vip",
    )  # fmt: skip

    def __init__(self, s: QueueSettings, rng: random.Random, history: int) -> None:
        self.s = s
        self.name = s.name
        self.members: list[AgentRec] = []
        self.heap: AgentHeap[AgentRec] = AgentHeap(key_function(s.strategy, s.name, rng))
        # ring_all: the eligible members by id (kept as they change, so a ring needs no scan)
        self.eligible: dict[str, AgentRec] = {}
        self.vip: list[Seq] = []  # waiting (join time, join number), sorted
        self.normal: list[Seq] = []
        self.by_seq: dict[Seq, CallRec] = {}
        self.times = HandleTimes(history, s.default_handle_s)
        self.present = 0
        self.staffed = 0
        self.entered = self.connected = self.abandoned = self.timed_out = self.exited = 0
        self.cb_failed = self.refused = self.ringing = self.dialing = 0

    def position(self, c: CallRec) -> int:
        if c.vip:
            return bisect_left(self.vip, c.seq) + 1
        return len(self.vip) + bisect_left(self.normal, c.seq) + 1


def check_invariants(
    calls: dict[str, CallRec],
    agents: Iterable[AgentRec],
    queues: Iterable[QueueRec],
    timers: list[tuple[float, int, int, Any, int]],
) -> None:
    """The core's consistency, checked from scratch (for tests): see ``Acd.check_invariants``."""
    live = {(k, id(o), t) for _, _, k, o, t in timers}
    wait_timers = {id(o) for _, _, k, o, _ in timers if k == T_WAIT}
    in_call: dict[str, str] = {}
    for c in calls.values():
        assert not c.done and calls.get(c.id) is c
        q = c.q
        waiting = q.by_seq.get(c.seq) is c
        assert waiting == (c.state == WAITING), f"{c.id}: state {c.state} vs waiting list"
        if c.state == WAITING:
            if c.callback is None and c.timeout_at != float("inf"):
                assert id(c) in wait_timers, f"{c.id}: waiting without a max-wait timer"
            assert not c.ringing
        elif c.state == RINGING:
            assert c.ringing, f"{c.id}: ringing nobody"
            assert (T_RING, id(c), c.ring_tok) in live, f"{c.id}: ring without backstop timer"
            for a in c.ringing:
                assert a.state is AgentState.RINGING and a.call is c, f"{c.id}: {a.id} not ringing it"
                assert a.registered, f"{c.id}: unregistered {a.id} ringing"
                assert a.id not in in_call, f"agent {a.id} in two calls"
                in_call[a.id] = c.id
        else:
            ag = c.agent
            assert ag is not None, f"{c.id}: connected without an agent"
            assert ag.state is AgentState.ON_CALL and ag.call is c, f"{c.id}: agent {ag.id} not on it"
            assert not c.ringing
            assert ag.id not in in_call, f"agent {ag.id} in two calls"
            in_call[ag.id] = c.id
    for a in agents:
        st = a.state
        if st is AgentState.RINGING or st is AgentState.ON_CALL:
            assert a.call is not None and in_call.get(a.id) == a.call.id, f"{a.id}: {st} without its call"
        else:
            assert a.call is None, f"{a.id}: {st} holds call {a.call.id}"
            assert a.id not in in_call
        if st is AgentState.WRAP_UP:
            assert (T_WRAP, id(a), a.wrap_tok) in live, f"{a.id}: wrap-up without a timer"
        if st is not AgentState.ON_CALL:
            assert not a.pending_logout and a.pending_pause is None, f"{a.id}: pending change in {st}"
        present = a.registered and st is not AgentState.LOGGED_OUT
        assert a.present == present and a.staffed == (present and st is not AgentState.PAUSED)
    for q in queues:
        assert q.vip == sorted(q.vip) and q.normal == sorted(q.normal), f"{q.name}: unsorted"
        assert len(q.vip) + len(q.normal) == len(q.by_seq), f"{q.name}: waiting lists disagree"
        for seq in q.vip:
            assert q.by_seq[seq].vip
        for seq in q.normal:
            assert not q.by_seq[seq].vip
        mine = [c for c in calls.values() if c.q is q]
        ringing = sum(1 for c in mine if c.state == RINGING)
        dialing = sum(1 for c in mine if c.state == DIALING)
        assert q.ringing == ringing and q.dialing == dialing, f"{q.name}: ringing/dialing counters"
        outcomes = q.connected + q.abandoned + q.timed_out + q.exited + q.cb_failed
        live_calls = len(q.by_seq) + ringing + dialing
        assert q.entered == outcomes + live_calls, f"{q.name}: counts do not add up"
        assert q.present == sum(1 for a in q.members if a.present), f"{q.name}: present count"
        assert q.staffed == sum(1 for a in q.members if a.staffed), f"{q.name}: staffed count"
        heap_live = q.heap.live()
        for a in heap_live:
            assert a.state is AgentState.AVAILABLE and a.registered, (
                f"{q.name}: live heap entry for ineligible {a.id}"
            )
        eligible = [a for a in q.members if a.state is AgentState.AVAILABLE and a.registered]
        if q.s.strategy is Strategy.RING_ALL:
            assert set(q.eligible) == {a.id for a in eligible}, f"{q.name}: ring_all eligible set"
            assert all(q.eligible[a.id] is a for a in eligible)
        assert {a.id for a in eligible} == {a.id for a in heap_live}, f"{q.name}: heap misses eligible agents"
        assert len(heap_live) == len(set(map(id, heap_live))), f"{q.name}: duplicate live heap entries"
        if q.by_seq and eligible:
            raise AssertionError(f"{q.name}: {len(q.by_seq)} waiting while {eligible[0].id} is eligible")
        q.times.check()
