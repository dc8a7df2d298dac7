"""Randomised simulation of the ACD core: nobody gets stuck, whatever happens in whatever order.

A hypothesis state machine plays joins, hangups at any moment, agents answering, missing, being
busy, unregistering, logging out/in, pausing, transfers, callbacks and time passing (timers), and
checks after every step the core's own invariants (``Acd.check_invariants``) plus what can be
checked from the outside: the event stream is consistent with the agents' states, every queue-log
entry has its Asterisk fields, and every caller who entered has at most one outcome, exactly the
callers without one are still in the core.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from softswitch.acd import (
    Acd,
    AgentSettings,
    AgentState,
    AgentStateChanged,
    CallTimedOut,
    CancelRing,
    Event,
    QueueLogEntry,
    QueueSettings,
    RingAgents,
    Strategy,
)

AGENTS = [
    AgentSettings("a1", "2001", {"a": 5}),
    AgentSettings("a2", "2002", {"a": 2, "b": 7}),
    AgentSettings("a3", "2003", {"b": 3}),
    AgentSettings("a4", "2004", {"a": 9, "b": 1}),
    AgentSettings("a5", "2004", {"b": 4}),  # shares a phone with a4
]
EXTENSIONS = sorted({a.extension for a in AGENTS})
ARITY = {
    "ENTERQUEUE": 2, "RINGAGENT": 2, "RINGNOANSWER": 1, "CONNECT": 3, "COMPLETECALLER": 3, "COMPLETEAGENT": 3,
    "ABANDON": 3, "EXITWITHTIMEOUT": 3, "EXITWITHKEY": 4, "EXITEMPTY": 3, "TRANSFER": 5,
    "AGENTLOGIN": 1, "AGENTLOGOFF": 2, "PAUSE": 1, "UNPAUSE": 1, "CALLBACK": 3, "CALLBACKCONNECT": 2,
    "CALLBACKFAIL": 2, "VOICEMAIL": 3, "DIVERT": 1,
}  # fmt: skip
OUTCOMES = {"CONNECT", "ABANDON", "EXITWITHTIMEOUT", "EXITWITHKEY", "VOICEMAIL", "CALLBACKFAIL", "EXITEMPTY"}

idx = st.integers(min_value=0, max_value=10_000)


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.acd: Acd
        self.now = 1000.0
        self.n = 0
        self.states = {a.id: AgentState.LOGGED_OUT for a in AGENTS}
        self.entered: set[str] = set()
        self.outcome: dict[str, str] = {}
        self.ringing: dict[str, str] = {}  # agent -> call, from RingAgents / CancelRing / results

    @initialize(
        strategies=st.tuples(st.sampled_from(Strategy), st.sampled_from(Strategy)),
        wrapup=st.sampled_from([0.0, 5.0, 30.0]),
        max_misses=st.integers(1, 3),
        max_wait=st.sampled_from([0.0, 40.0, 200.0]),
        join_empty=st.booleans(),
        vip_priority=st.booleans(),
        divert=st.sampled_from([0.0, 2.0]),
        seed=st.integers(0, 2**16),
        logged_in=st.sets(st.sampled_from([a.id for a in AGENTS])),
        registered=st.sets(st.sampled_from(EXTENSIONS)),
    )
    def setup(
        self,
        strategies: tuple[Strategy, Strategy],
        wrapup: float,
        max_misses: int,
        max_wait: float,
        join_empty: bool,
        vip_priority: bool,
        divert: float,
        seed: int,
        logged_in: set[str],
        registered: set[str],
    ) -> None:
        common: dict[str, Any] = {
            "wrapup_s": wrapup, "max_misses": max_misses, "max_wait_s": max_wait, "join_empty": join_empty,
            "vip_priority": vip_priority, "ring_timeout_s": 15.0, "on_timeout": "voicemail:x",
        }  # fmt: skip
        queues = [
            QueueSettings("qa", "a", strategy=strategies[0], **common),
            QueueSettings("qb", "b", strategy=strategies[1], divert_calls_per_agent=divert, **common),
        ]
        self.acd = Acd(queues, AGENTS, rng=random.Random(seed), history=5)
        for ext in sorted(registered):
            self.apply(self.acd.set_registered(ext, True, self.now))
        for a in sorted(logged_in):
            self.apply(self.acd.login(a, self.now))

    # --- helpers ----------------------------------------------------------------------------------

    def apply(self, events: list[Event]) -> None:
        for e in events:
            if isinstance(e, AgentStateChanged):
                assert e.old is self.states[e.agent_id], (
                    f"{e.agent_id}: {e.old} but model has {self.states[e.agent_id]}"
                )
                assert e.at == self.now
                self.states[e.agent_id] = e.new
                if e.new is not AgentState.RINGING:
                    self.ringing.pop(e.agent_id, None)
            elif isinstance(e, RingAgents):
                assert e.agents and len(e.agents) == len(e.extensions)
                for a in e.agents:
                    assert self.states[a] is AgentState.RINGING
                    self.ringing[a] = e.call_id
                if e.callback:
                    assert len(e.agents) == 1
            elif isinstance(e, CancelRing):
                assert self.ringing.get(e.agent_id) == e.call_id, f"CancelRing {e} not ringing"
            elif isinstance(e, CallTimedOut):
                assert e.target == "voicemail:x"
            elif isinstance(e, QueueLogEntry):
                assert len(e.data) == ARITY[e.event], e
                assert all(isinstance(d, str) for d in e.data)
                if e.call_id == "NONE":
                    assert e.queue == "NONE" and e.agent != "NONE"
                    continue
                if e.event == "ENTERQUEUE":
                    assert e.call_id not in self.entered
                    self.entered.add(e.call_id)
                elif e.event in OUTCOMES:
                    assert e.call_id in self.entered
                    assert e.call_id not in self.outcome, (
                        f"{e.call_id}: {e.event} after {self.outcome.get(e.call_id)}"
                    )
                    self.outcome[e.call_id] = e.event
                elif e.event in ("COMPLETECALLER", "COMPLETEAGENT", "TRANSFER"):
                    assert self.outcome.get(e.call_id) == "CONNECT"

    def snap(self) -> dict[str, Any]:
        return self.acd.snapshot()

    def calls_in(self, *states: str) -> list[str]:
        return sorted(c for c, v in self.snap()["calls"].items() if v["state"] in states)

    def pick(self, items: list[str], i: int) -> str | None:
        return items[i % len(items)] if items else None

    # --- callers ----------------------------------------------------------------------------------

    @rule(queue=st.sampled_from(["qa", "qb"]), vip=st.booleans())
    def join(self, queue: str, vip: bool) -> None:
        self.n += 1
        self.apply(self.acd.join(f"c{self.n}", queue, self.now, vip=vip, caller=f"55{self.n}"))

    @rule(i=idx, reason=st.sampled_from(["abandon", "abandon", "key", "voicemail", "callback", "cancel"]))
    def leave(self, i: int, reason: str) -> None:
        c = self.pick(sorted(self.snap()["calls"]), i)
        if c is not None:
            self.apply(self.acd.leave(c, self.now, reason=reason, key="1"))

    @rule(i=idx)
    def request_callback(self, i: int) -> None:
        c = self.pick(self.calls_in("waiting", "ringing"), i)
        if c is not None:
            self.apply(self.acd.request_callback(c, self.now, number="13800000000"))

    @rule(i=idx, connected=st.booleans())
    def callback_result(self, i: int, connected: bool) -> None:
        c = self.pick(self.calls_in("dialing"), i)
        if c is not None:
            self.apply(self.acd.callback_result(c, self.now, connected=connected))

    @rule(i=idx, queue=st.sampled_from(["qa", "qb"]))
    def join_and_wait(self, i: int, queue: str) -> None:
        self.join(queue, i % 5 == 0)

    @rule(i=idx, by=st.sampled_from(["caller", "agent"]))
    def call_ended(self, i: int, by: str) -> None:
        c = self.pick(self.calls_in("connected", "dialing"), i)
        if c is not None:
            self.apply(self.acd.call_ended(c, self.now, by=by))

    @rule(i=idx)
    def transfer(self, i: int) -> None:
        c = self.pick(self.calls_in("connected"), i)
        if c is not None:
            self.apply(self.acd.transferred(c, self.now, target="3001"))

    # --- rings ------------------------------------------------------------------------------------

    @rule(i=idx, outcome=st.sampled_from(["answer", "answer", "noanswer", "busy"]))
    def ring_result(self, i: int, outcome: str) -> None:
        agents = sorted(self.ringing)
        a = self.pick(agents, i)
        if a is None:
            return
        c = self.ringing[a]
        ev = self.acd.ring_result(c, a, self.now, answered=outcome == "answer", busy=outcome == "busy")
        assert ev, "a ring the core started must have a result"
        self.apply(ev)

    @rule(i=idx)
    def answer(self, i: int) -> None:
        self.ring_result(i, "answer")

    @rule(i=idx, j=idx, answered=st.booleans())
    def stale_ring_result(self, i: int, j: int, answered: bool) -> None:
        """Late or bogus results (a ring already withdrawn) must change nothing."""
        a = AGENTS[i % len(AGENTS)].id
        c = f"c{j % (self.n + 1)}"
        if self.ringing.get(a) == c:
            return
        assert self.acd.ring_result(c, a, self.now, answered=answered) == []

    # --- agents -----------------------------------------------------------------------------------

    @rule(i=idx, action=st.sampled_from(["login", "login", "logout", "pause", "unpause", "unpause"]))
    def agent(self, i: int, action: str) -> None:
        a = AGENTS[i % len(AGENTS)].id
        if action == "pause":
            self.apply(self.acd.pause(a, self.now, "break"))
        else:
            self.apply(getattr(self.acd, action)(a, self.now))

    @rule(i=idx)
    def unpause_a_paused_agent(self, i: int) -> None:
        a = self.pick(sorted(a for a, s in self.states.items() if s is AgentState.PAUSED), i)
        if a is not None:
            self.apply(self.acd.unpause(a, self.now))

    @rule(i=idx, registered=st.booleans())
    def registration(self, i: int, registered: bool) -> None:
        self.apply(self.acd.set_registered(EXTENSIONS[i % len(EXTENSIONS)], registered, self.now))

    # --- time -------------------------------------------------------------------------------------

    @rule(dt=st.sampled_from([0.0, 0.5, 3.0, 10.0, 20.0, 60.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.apply(self.acd.handle_timer(self.now))

    @rule()
    def next_timer(self) -> None:
        t = self.acd.next_timer()
        if t is not None:
            assert t > self.now, "a due timer was not handled"
            self.now = t
            self.apply(self.acd.handle_timer(self.now))

    # --- checks -----------------------------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "acd"):
            return
        self.acd.check_invariants()
        snap = self.snap()
        for a, v in snap["agents"].items():
            assert v["state"] == self.states[a].value, f"{a}: core {v['state']}, events {self.states[a]}"
            if v["state"] == "ringing":
                assert self.ringing.get(a) == v["call"], (
                    f"{a}: rings {v['call']}, events say {self.ringing.get(a)}"
                )
        assert {a for a, v in snap["agents"].items() if v["state"] == "ringing"} == set(self.ringing)
        live = set(snap["calls"])
        for c in self.entered:
            if c not in self.outcome:
                assert c in live, f"{c} entered, has no outcome and is not in the core: lost"
            elif self.outcome[c] != "CONNECT":
                assert c not in live, f"{c} ended with {self.outcome[c]} but is still in the core"
        for c, v in snap["calls"].items():
            assert c in self.entered or v["callback"] is not None
            assert (self.outcome.get(c) == "CONNECT") == (v["state"] == "connected"), c


AcdMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAcdMachine = AcdMachine.TestCase
