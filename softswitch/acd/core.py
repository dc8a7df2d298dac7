"""Sans-I/O ACD core: agents, queues, routing strategies, callbacks and the queue log.

Nothing here reads the clock, draws its own randomness or does I/O: every method takes ``now``
(float seconds, epoch) and returns a list of typed events for the service to act on (ring agents,
cancel rings, move a timed-out caller) and to persist (``QueueLogEntry``, ``AgentStateChanged``).
Timers are data: ``next_timer()`` / ``handle_timer(now)`` cover wrap-up ends, max-wait expiry
and a ring backstop (``ring_timeout_s + RING_GRACE_S`` after a ring starts, should the service
never report the ring's result).

Routing is event-driven and O(log n): per queue a heap of eligible members keyed by the strategy
(see ``strategies``) and two sorted lists of waiting callers (VIP class, normal class; FIFO by join
time, then a global join number). Invariant kept after every public call: no caller waits in a
queue while one of its members is eligible (available and registered). An agent who missed a call is offered
it again only when no other eligible member exists. Expected wait: see ``ewt``.
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_left, insort
from collections.abc import Iterable
from typing import Any

from .events import (
    AgentState,
    AgentStateChanged,
    CallTimedOut,
    CancelRing,
    Event,
    Joined,
    JoinRefused,
    QueueLogEntry,
    RingAgents,
)
from .ewt import expected_wait
from .records import CALL_STATE_NAMES as _STATE_NAMES
from .records import CONNECTED as _CONNECTED
from .records import DIALING as _DIALING
from .records import RINGING as _RINGING
from .records import T_RING as _T_RING
from .records import T_WAIT as _T_WAIT
from .records import T_WRAP as _T_WRAP
from .records import WAITING as _WAITING
from .records import AgentRec as _Agent
from .records import CallRec as _Call
from .records import QueueRec as _Queue
from .records import Seq as _Seq
from .records import check_invariants
from .records import secs as _s
from .settings import AgentSettings, QueueSettings, Strategy

__all__ = [
    "RING_GRACE_S",
    "Acd",
    "AgentState",
    "AgentStateChanged",
    "CallTimedOut",
    "CancelRing",
    "Event",
    "JoinRefused",
    "Joined",
    "QueueLogEntry",
    "RingAgents",
]

_AV = AgentState.AVAILABLE
RING_GRACE_S = 2.0  # the core's ring backstop fires this long after the ring timeout


class Acd:
    """The ACD state machine. Every mutating method returns the list of events it produced."""

    def __init__(
        self,
        queues: Iterable[QueueSettings],
        agents: Iterable[AgentSettings],
        *,
        rng: random.Random | None = None,
        history: int = 50,
    ) -> None:
        self._rng = rng if rng is not None else random.Random(0)
        self._queues: dict[str, _Queue] = {}
        for qs in queues:
            if qs.name in self._queues:
                raise ValueError(f"duplicate queue {qs.name!r}")
            self._queues[qs.name] = _Queue(qs, self._rng, history)
        by_skill: dict[str, list[_Queue]] = {}
        for q in self._queues.values():
            by_skill.setdefault(q.s.skill, []).append(q)
        self._agents: dict[str, _Agent] = {}
        self._by_ext: dict[str, list[_Agent]] = {}
        for s in agents:
            if s.id in self._agents:
                raise ValueError(f"duplicate agent {s.id!r}")
            a = _Agent(s)
            self._agents[s.id] = a
            self._by_ext.setdefault(s.extension, []).append(a)
            for skill, level in s.skills.items():
                for q in by_skill.get(skill, ()):
                    a.queues.append(q)
                    if q.s.strategy is Strategy.RING_ALL:
                        a.ring_all.append(q)
                    a.level[q.name] = level
                    a.index[q.name] = len(q.members)
                    q.members.append(a)
        for q in self._queues.values():
            q.heap.members = len(q.members)
        self._calls: dict[str, _Call] = {}
        self._seq = 0
        self._rr_seq = 0
        self._timers: list[tuple[float, int, int, Any, int]] = []
        self._timer_n = 0
        self._dirty_calls: list[_Call] = []
        self._dirty_agents: list[_Agent] = []

    # --- agents ---------------------------------------------------------------------------------

    def login(self, agent_id: str, now: float) -> list[Event]:
        """Log the agent in (AVAILABLE). Cancels a pending logout when still on a call."""
        a = self._agents[agent_id]
        if a.state is not AgentState.LOGGED_OUT:
            a.pending_logout = False
            return []
        out: list[Event] = []
        a.misses = 0
        a.login_at = a.idle_since = now
        out.append(QueueLogEntry(now, "NONE", "NONE", a.id, "AGENTLOGIN", (a.ext,)))
        self._set_state(a, _AV, now, "", out)
        return self._dispatch(now, out)

    def logout(self, agent_id: str, now: float) -> list[Event]:
        """Log out; a ring is withdrawn (the caller goes back to its place); on a call: when it ends."""
        a = self._agents[agent_id]
        st = a.state
        if st is AgentState.LOGGED_OUT:
            return []
        if st is AgentState.ON_CALL:
            a.pending_logout = True
            return []
        out: list[Event] = []
        if st is AgentState.RINGING:
            self._withdraw(a, now, out)
        self._logout(a, now, out)
        return self._dispatch(now, out)

    def pause(self, agent_id: str, now: float, reason: str = "") -> list[Event]:
        """Pause (a ring is withdrawn); on a call the pause is pending and applies when the call ends."""
        a = self._agents[agent_id]
        st = a.state
        if st is AgentState.LOGGED_OUT or st is AgentState.PAUSED:
            return []
        if st is AgentState.ON_CALL:
            a.pending_pause = reason
            return []
        out: list[Event] = []
        if st is AgentState.RINGING:
            self._withdraw(a, now, out)
        self._pause(a, now, reason, out)
        return self._dispatch(now, out)

    def unpause(self, agent_id: str, now: float) -> list[Event]:
        """Back to AVAILABLE (consecutive misses reset); cancels a pending pause."""
        a = self._agents[agent_id]
        if a.state is not AgentState.PAUSED:
            a.pending_pause = None
            return []
        out: list[Event] = [QueueLogEntry(now, "NONE", "NONE", a.id, "UNPAUSE", ("",))]
        a.misses = 0
        self._set_state(a, _AV, now, "", out)
        return self._dispatch(now, out)

    def set_registered(self, extension: str, registered: bool, now: float) -> list[Event]:
        """Registration of the agents' phone; unknown extension -> []. Unregistered agents are never
        rung and not staffed (a ring in progress is withdrawn); their AgentState is unchanged."""
        out: list[Event] = []
        for a in self._by_ext.get(extension, ()):
            if a.registered is registered:
                continue
            a.registered = registered
            a.epoch += 1
            for q in a.ring_all:
                q.eligible.pop(a.id, None)
            self._update_staffed(a)
            if registered:
                if a.state is _AV:
                    self._became_eligible(a)
            elif a.state is AgentState.RINGING:
                self._withdraw(a, now, out)
                self._set_state(a, _AV, now, "", out)
        return self._dispatch(now, out)

    # --- callers --------------------------------------------------------------------------------

    def join(
        self, call_id: str, queue: str, now: float, *, vip: bool = False, caller: str = ""
    ) -> list[Event]:
        """A caller enters ``queue``: first event Joined or JoinRefused; a ring may follow at once.

        Refused ("empty") when join_empty is False and no member is logged in with a registered
        phone (logged ENTERQUEUE + EXITEMPTY); diverted before entry (DIVERT, no ENTERQUEUE) when
        staffed > 0 and (waiting+1)/staffed > divert_calls_per_agent ("ratio") or the new caller's
        expected wait > divert_wait_s ("wait").
        """
        q = self._queues[queue]
        if call_id in self._calls:
            raise ValueError(f"call {call_id!r} is already queued")
        s = q.s
        if not s.join_empty and q.present == 0:
            q.refused += 1
            return [
                JoinRefused(call_id, queue, "empty"),
                QueueLogEntry(now, call_id, queue, "NONE", "ENTERQUEUE", ("", caller)),
                QueueLogEntry(now, call_id, queue, "NONE", "EXITEMPTY", ("1", "1", "0")),
            ]
        cls_vip = vip and s.vip_priority
        newpos = (len(q.vip) + 1) if cls_vip else (len(q.vip) + len(q.normal) + 1)
        if q.staffed > 0:
            reason = ""
            if s.divert_calls_per_agent > 0 and (len(q.by_seq) + 1) / q.staffed > s.divert_calls_per_agent:
                reason = "ratio"
            elif s.divert_wait_s > 0:
                ewt = expected_wait(newpos, q.staffed, q.times.average)
                if ewt is not None and ewt > s.divert_wait_s:
                    reason = "wait"
            if reason:
                q.refused += 1
                return [
                    JoinRefused(call_id, queue, reason),
                    QueueLogEntry(now, call_id, queue, "NONE", "DIVERT", (reason,)),
                ]
        self._seq += 1
        c = _Call(call_id, q, vip, caller, (now, self._seq), now)
        self._calls[call_id] = c
        q.entered += 1
        self._enqueue(c)
        c.origpos = pos = q.position(c)
        if c.timeout_at != float("inf"):
            self._push_timer(c.timeout_at, _T_WAIT, c, 0)
        out: list[Event] = [
            Joined(call_id, queue, pos, expected_wait(pos, q.staffed, q.times.average)),
            QueueLogEntry(now, call_id, queue, "NONE", "ENTERQUEUE", ("", caller)),
        ]
        self._dirty_calls.append(c)
        return self._dispatch(now, out)

    def leave(self, call_id: str, now: float, *, reason: str = "abandon", key: str = "") -> list[Event]:
        """The caller leaves while waiting or ringing (rings withdrawn: CancelRing).

        reason: "abandon" -> ABANDON, "key" -> EXITWITHKEY, "voicemail" -> VOICEMAIL, "callback" ->
        the entry stays in line as a callback (number = caller). A callback entry ignores leave()
        (its caller is expected to hang up) except reason "cancel", which removes it (ABANDON).
        A connected call -> call_ended(by="caller"). Unknown call -> [].
        """
        c = self._calls.get(call_id)
        if c is None:
            return []
        if reason not in ("abandon", "key", "voicemail", "callback", "cancel"):
            raise ValueError(f"unknown leave reason {reason!r}")
        if c.state == _CONNECTED:
            return self.call_ended(call_id, now, by="caller")
        if c.state == _DIALING:
            return []
        if c.callback is not None:
            if reason != "cancel":
                return []
        elif reason == "callback":
            return self.request_callback(call_id, now, number=c.caller)
        out: list[Event] = []
        q = c.q
        pos = q.position(c)
        if c.state == _RINGING:
            self._release_rings(c, now, out)
        else:
            self._unqueue(c)
        wait = _s(now - c.joined_at)
        data: tuple[str, ...]
        if reason == "key":
            ev, data = "EXITWITHKEY", (key, str(pos), str(c.origpos), wait)
            q.exited += 1
        elif reason == "voicemail":
            ev, data = "VOICEMAIL", (str(pos), str(c.origpos), wait)
            q.exited += 1
        else:
            ev, data = "ABANDON", (str(pos), str(c.origpos), wait)
            q.abandoned += 1
        out.append(QueueLogEntry(now, c.id, q.name, "NONE", ev, data))
        self._forget(c)
        return self._dispatch(now, out)

    def ring_result(
        self, call_id: str, agent_id: str, now: float, *, answered: bool, busy: bool = False
    ) -> list[Event]:
        """Outcome of ringing ``agent_id`` for ``call_id``; a stale result (not ringing) -> [].

        Answered: agent ON_CALL, other rung agents get CancelRing, CONNECT (a callback entry:
        CALLBACKCONNECT, then the service dials the customer and reports callback_result).
        Not answered (or busy): RINGNOANSWER, a miss (auto-pause at max_misses, else AVAILABLE);
        when no agent rings any more the caller goes back to its place and routing continues.
        """
        a = self._agents[agent_id]
        c = self._calls.get(call_id)
        if c is None or c.state != _RINGING or a.call is not c or a.state is not AgentState.RINGING:
            return []
        out: list[Event] = []
        q = c.q
        if not answered:
            c.ringing.remove(a)
            a.call = None
            c.missed.add(a.id)
            ring_ms = str(round((now - c.ring_started) * 1000))
            out.append(QueueLogEntry(now, c.id, q.name, a.id, "RINGNOANSWER", (ring_ms,)))
            a.misses += 1
            if 0 < q.s.max_misses <= a.misses:
                self._pause(a, now, "no-answer", out)
            else:
                self._set_state(a, _AV, now, "", out)
            if not c.ringing:
                self._requeue(c, now, out)
            return self._dispatch(now, out)
        self._release_rings(c, now, out, keep=a)
        c.agent = a
        c.answered_at = c.connected_at = now
        a.misses = 0
        self._set_state(a, AgentState.ON_CALL, now, "", out)
        a.call = c
        if c.callback is not None:
            c.state = _DIALING
            q.dialing += 1
            out.append(
                QueueLogEntry(now, c.id, q.name, a.id, "CALLBACKCONNECT", (c.callback, _s(now - c.joined_at)))
            )
        else:
            self._connect(c, now, out)
        return self._dispatch(now, out)

    def call_ended(self, call_id: str, now: float, *, by: str) -> list[Event]:
        """Talk over (``by`` "caller" | "agent"): COMPLETECALLER / COMPLETEAGENT, agent -> wrap-up.

        Not yet connected: the caller left (as leave(reason="abandon")); a callback being dialed:
        as callback_result(connected=False). Unknown call -> [].
        """
        c = self._calls.get(call_id)
        if c is None:
            return []
        if c.state == _DIALING:
            return self.callback_result(call_id, now, connected=False)
        if c.state != _CONNECTED:
            if c.callback is not None:
                return self.leave(call_id, now, reason="cancel")
            return self.leave(call_id, now, reason="abandon")
        if by not in ("caller", "agent"):
            raise ValueError(f"call_ended by {by!r}: expected 'caller' or 'agent'")
        ev = "COMPLETECALLER" if by == "caller" else "COMPLETEAGENT"
        talk = now - c.connected_at
        data = (_s(c.answered_at - c.joined_at), _s(talk), str(c.origpos))
        return self._end_talk(
            c, now, talk, QueueLogEntry(now, c.id, c.q.name, self._agent_of(c).id, ev, data)
        )

    def transferred(self, call_id: str, now: float, *, target: str) -> list[Event]:
        """The agent blind-transferred the connected caller to ``target``: TRANSFER, agent -> wrap-up."""
        c = self._calls.get(call_id)
        if c is None or c.state != _CONNECTED:
            return []
        talk = now - c.connected_at
        data = (target, "", _s(c.answered_at - c.joined_at), _s(talk), str(c.origpos))
        return self._end_talk(
            c, now, talk, QueueLogEntry(now, c.id, c.q.name, self._agent_of(c).id, "TRANSFER", data)
        )

    # --- callbacks ------------------------------------------------------------------------------

    def request_callback(self, call_id: str, now: float, *, number: str) -> list[Event]:
        """The waiting caller becomes a callback entry with the same place (CALLBACK logged).

        The entry no longer times out; a ring in progress is withdrawn. When it reaches the front
        and an agent is free: RingAgents(callback=True) to one agent; when answered the service
        dials ``number`` and reports callback_result. Unknown or not waiting/ringing -> [].
        """
        c = self._calls.get(call_id)
        if c is None or c.callback is not None or c.state not in (_WAITING, _RINGING):
            return []
        out: list[Event] = []
        q = c.q
        if c.state == _RINGING:
            self._release_rings(c, now, out)
            c.state = _WAITING
            self._enqueue(c)
            self._dirty_calls.append(c)
        c.callback = number
        out.append(
            QueueLogEntry(
                now, c.id, q.name, "NONE", "CALLBACK", (number, str(q.position(c)), _s(now - c.joined_at))
            )
        )
        return self._dispatch(now, out)

    def join_callback(
        self, call_id: str, queue: str, now: float, *, number: str, since: float
    ) -> list[Event]:
        """Queue a stored callback request (restart recovery, retry) at the place its ``since`` gives.

        Nothing is logged (the request's ENTERQUEUE and CALLBACK were logged when it was made).
        First event Joined; a ring may follow. A call id already in the core -> [].
        """
        q = self._queues[queue]
        if call_id in self._calls:
            return []
        self._seq += 1
        c = _Call(call_id, q, False, number, (since, self._seq), since)
        c.callback = number
        self._calls[call_id] = c
        q.entered += 1
        self._enqueue(c)
        c.origpos = pos = q.position(c)
        out: list[Event] = [Joined(call_id, queue, pos, expected_wait(pos, q.staffed, q.times.average))]
        self._dirty_calls.append(c)
        return self._dispatch(now, out)

    def callback_result(self, call_id: str, now: float, *, connected: bool) -> list[Event]:
        """The customer of an answered callback was reached (CONNECT, talk starts) or not
        (CALLBACKFAIL, the entry is removed: one attempt per request; the agent is available again)."""
        c = self._calls.get(call_id)
        if c is None or c.state != _DIALING:
            return []
        out: list[Event] = []
        q = c.q
        q.dialing -= 1
        if connected:
            c.connected_at = now
            self._connect(c, now, out)
            return out
        a = self._agent_of(c)
        number = c.callback or ""
        out.append(QueueLogEntry(now, c.id, q.name, a.id, "CALLBACKFAIL", (number, _s(now - c.joined_at))))
        q.cb_failed += 1
        self._forget(c)
        a.call = None
        self._after_call(a, now, 0.0, out)
        return self._dispatch(now, out)

    # --- timers ---------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When handle_timer must next run (None: no timer pending)."""
        timers = self._timers
        while timers:
            when, _, kind, obj, tok = timers[0]
            if self._timer_live(kind, obj, tok):
                return when
            heapq.heappop(timers)
        return None

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``: wrap-up ends, max-wait expiry (CallTimedOut), ring backstop."""
        out: list[Event] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, obj, tok = heapq.heappop(timers)
            if not self._timer_live(kind, obj, tok):
                continue
            if kind == _T_WRAP:
                a: _Agent = obj
                a.idle_since = now
                self._set_state(a, _AV, now, "", out)
            elif kind == _T_WAIT:
                c: _Call = obj
                if c.state == _WAITING:
                    self._unqueue(c)
                    self._timeout(c, now, out)
                # ringing: the ring's failure times the caller out (_requeue)
            else:
                c = obj
                for ag in list(c.ringing):
                    out.append(CancelRing(c.id, ag.id, ag.ext))
                    out.extend(self.ring_result(c.id, ag.id, now, answered=False))
            self._dispatch(now, out)
        return out

    # --- queries --------------------------------------------------------------------------------

    def position(self, call_id: str) -> int | None:
        """1-based place in line (VIPs ahead) of a waiting caller (not while an agent rings), else None."""
        c = self._calls.get(call_id)
        if c is None or c.state != _WAITING:
            return None
        return c.q.position(c)

    def expected_wait(self, call_id: str, now: float) -> float | None:
        """EWT(k) = k * AHT / n for the caller's position k (see ``ewt``); None if not waiting."""
        c = self._calls.get(call_id)
        if c is None or c.state != _WAITING:
            return None
        q = c.q
        return expected_wait(q.position(c), q.staffed, q.times.average)

    def agent_state(self, agent_id: str) -> AgentState:
        return self._agents[agent_id].state

    def queue_names(self) -> list[str]:
        return list(self._queues)

    def agent_ids(self) -> list[str]:
        return list(self._agents)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view: agents (state, since, reason, calls, registered, ...) and queues."""
        agents = {
            a.id: {
                "extension": a.ext,
                "state": a.state.value,
                "since": a.since,
                "reason": a.reason,
                "calls": a.calls,
                "registered": a.registered,
                "call": a.call.id if a.call is not None else None,
                "misses": a.misses,
                "pending": "logout" if a.pending_logout else ("pause" if a.pending_pause is not None else ""),
                "queues": [q.name for q in a.queues],
            }
            for a in self._agents.values()
        }
        queues = {
            q.name: {
                "strategy": q.s.strategy.value,
                "waiting": len(q.by_seq),
                "callbacks": sum(1 for c in q.by_seq.values() if c.callback is not None),
                "ringing": q.ringing,
                "staffed": q.staffed,
                "logged_in": q.present,
                "members": len(q.members),
                "entered": q.entered,
                "connected": q.connected,
                "abandoned": q.abandoned,
                "timed_out": q.timed_out,
                "exited": q.exited,
                "refused": q.refused,
                "aht": q.times.average,
            }
            for q in self._queues.values()
        }
        calls = {
            c.id: {
                "queue": c.q.name,
                "state": _STATE_NAMES[c.state],
                "joined": c.joined_at,
                "vip": c.vip,
                "callback": c.callback,
                "position": c.q.position(c) if c.state == _WAITING else None,
                "agents": [a.id for a in c.ringing]
                if c.state == _RINGING
                else ([c.agent.id] if c.agent else []),
            }
            for c in self._calls.values()
        }
        return {"agents": agents, "queues": queues, "calls": calls}

    # --- internals: agents ----------------------------------------------------------------------

    def _set_state(self, a: _Agent, new: AgentState, now: float, reason: str, out: list[Event]) -> None:
        old = a.state
        a.state = new
        a.since = now
        a.reason = reason
        a.epoch += 1  # invalidates the agent's heap entries
        if old is _AV:
            for q in a.ring_all:
                q.eligible.pop(a.id, None)
        out.append(AgentStateChanged(a.id, old, new, now, reason))
        self._update_staffed(a)
        if new is _AV and a.registered:
            self._became_eligible(a)

    def _became_eligible(self, a: _Agent) -> None:
        for q in a.queues:
            q.heap.push(a)
        for q in a.ring_all:
            q.eligible[a.id] = a
        self._dirty_agents.append(a)

    def _update_staffed(self, a: _Agent) -> None:
        present = a.registered and a.state is not AgentState.LOGGED_OUT
        staffed = present and a.state is not AgentState.PAUSED
        dp = int(present) - int(a.present)
        ds = int(staffed) - int(a.staffed)
        if dp or ds:
            a.present = present
            a.staffed = staffed
            for q in a.queues:
                q.present += dp
                q.staffed += ds

    def _pause(self, a: _Agent, now: float, reason: str, out: list[Event]) -> None:
        a.pending_pause = None
        out.append(QueueLogEntry(now, "NONE", "NONE", a.id, "PAUSE", (reason,)))
        self._set_state(a, AgentState.PAUSED, now, reason, out)

    def _logout(self, a: _Agent, now: float, out: list[Event]) -> None:
        a.pending_logout = False
        a.pending_pause = None
        out.append(QueueLogEntry(now, "NONE", "NONE", a.id, "AGENTLOGOFF", (a.ext, _s(now - a.login_at))))
        self._set_state(a, AgentState.LOGGED_OUT, now, "", out)

    def _after_call(self, a: _Agent, now: float, wrapup_s: float, out: list[Event]) -> None:
        """The agent's call is over: pending logout/pause, else wrap-up (timer), else available."""
        a.idle_since = now
        if a.pending_logout:
            self._logout(a, now, out)
        elif a.pending_pause is not None:
            self._pause(a, now, a.pending_pause, out)
        elif wrapup_s > 0:
            self._set_state(a, AgentState.WRAP_UP, now, "", out)
            a.wrap_tok += 1
            self._push_timer(now + wrapup_s, _T_WRAP, a, a.wrap_tok)
        else:
            self._set_state(a, _AV, now, "", out)

    def _withdraw(self, a: _Agent, now: float, out: list[Event]) -> None:
        """Stop ringing ``a`` (no miss counted); the caller goes back to its place if nobody else rings."""
        c = self._call_of(a)
        out.append(CancelRing(c.id, a.id, a.ext))
        c.ringing.remove(a)
        a.call = None
        if not c.ringing:
            self._requeue(c, now, out)

    # --- internals: calls -----------------------------------------------------------------------

    def _enqueue(self, c: _Call) -> None:
        q = c.q
        lst = q.vip if c.vip else q.normal
        if not lst or lst[-1] < c.seq:
            lst.append(c.seq)
        else:
            insort(lst, c.seq)
        q.by_seq[c.seq] = c
        c.state = _WAITING

    def _unqueue(self, c: _Call) -> None:
        q = c.q
        lst = q.vip if c.vip else q.normal
        if lst[0] == c.seq:
            del lst[0]
        else:
            del lst[bisect_left(lst, c.seq)]
        del q.by_seq[c.seq]

    def _release_rings(self, c: _Call, now: float, out: list[Event], keep: _Agent | None = None) -> None:
        """End the ring: every rung agent but ``keep`` gets CancelRing and is available again."""
        for a in c.ringing:
            if a is not keep:
                out.append(CancelRing(c.id, a.id, a.ext))
                a.call = None
                self._set_state(a, _AV, now, "", out)
        c.ringing = []
        c.q.ringing -= 1
        c.ring_tok += 1

    def _requeue(self, c: _Call, now: float, out: list[Event]) -> None:
        """Nobody rings any more: back to the same place, or out if max wait has passed meanwhile."""
        c.q.ringing -= 1
        c.ring_tok += 1
        c.state = _WAITING
        if c.callback is None and now >= c.timeout_at:
            self._timeout(c, now, out)
        else:
            self._enqueue(c)
            self._dirty_calls.append(c)

    def _timeout(self, c: _Call, now: float, out: list[Event]) -> None:
        q = c.q
        data = (str(q.position(c)), str(c.origpos), _s(now - c.joined_at))
        out.append(QueueLogEntry(now, c.id, q.name, "NONE", "EXITWITHTIMEOUT", data))
        out.append(CallTimedOut(c.id, q.name, q.s.on_timeout))
        q.timed_out += 1
        self._forget(c)

    def _forget(self, c: _Call) -> None:
        c.done = True
        c.ring_tok += 1
        del self._calls[c.id]

    def _connect(self, c: _Call, now: float, out: list[Event]) -> None:
        q = c.q
        a = self._agent_of(c)
        c.state = _CONNECTED
        q.connected += 1
        a.calls += 1
        a.qcalls[q.name] = a.qcalls.get(q.name, 0) + 1
        data = (_s(c.answered_at - c.joined_at), c.id, _s(c.answered_at - c.ring_started))
        out.append(QueueLogEntry(now, c.id, q.name, a.id, "CONNECT", data))

    def _end_talk(self, c: _Call, now: float, talk: float, entry: QueueLogEntry) -> list[Event]:
        q = c.q
        a = self._agent_of(c)
        out: list[Event] = [entry]
        q.times.add(talk + q.s.wrapup_s)
        a.qtalk[q.name] = a.qtalk.get(q.name, 0.0) + talk
        self._forget(c)
        a.call = None
        self._after_call(a, now, q.s.wrapup_s, out)
        return self._dispatch(now, out)

    @staticmethod
    def _agent_of(c: _Call) -> _Agent:
        assert c.agent is not None
        return c.agent

    @staticmethod
    def _call_of(a: _Agent) -> _Call:
        assert a.call is not None
        return a.call

    # --- internals: routing ---------------------------------------------------------------------

    def _dispatch(self, now: float, out: list[Event]) -> list[Event]:
        """Route what changed: callers back in line first (FIFO), then newly eligible agents."""
        calls, agents = self._dirty_calls, self._dirty_agents
        while calls or agents:
            if calls:
                c = calls.pop(0)
                if c.state == _WAITING and not c.done:
                    self._route_call(c, now, out)
            else:
                a = agents.pop(0)
                if a.state is _AV and a.registered:
                    self._route_agent(a, now, out)
        return out

    def _route_call(self, c: _Call, now: float, out: list[Event]) -> None:
        q = c.q
        if q.s.strategy is Strategy.RING_ALL and c.callback is None:
            eligible = list(q.eligible.values())
            if eligible:
                missed = c.missed
                fresh = [a for a in eligible if a.id not in missed] if missed else eligible
                self._ring(c, fresh or eligible, now, out)
            return
        a = q.heap.pick(c.missed)
        if a is not None:
            self._ring(c, [a], now, out)

    def _route_agent(self, a: _Agent, now: float, out: list[Event]) -> None:
        """``a`` became eligible: the first caller over its queues (VIP class first, then earliest
        join) is rung. If ``a`` missed that caller, the caller is routed by its queue instead (an
        eligible member who has not missed it first, ``a`` only as a last resort) and ``a`` looks
        again: each round takes one caller out of line, so this ends."""
        while a.state is _AV and a.registered:
            head: _Call | None = None
            hrank: tuple[int, _Seq] | None = None
            for q in a.queues:
                if q.by_seq:
                    r = (0, q.vip[0]) if q.vip else (1, q.normal[0])
                    if hrank is None or r < hrank:
                        head, hrank = q.by_seq[r[1]], r
            if head is None:
                return
            if (head.missed and a.id in head.missed) or head.q.s.strategy is Strategy.RING_ALL:
                self._route_call(head, now, out)
                if head.state == _WAITING:  # cannot happen while a is an eligible member
                    return
            else:
                self._ring(head, [a], now, out)

    def _ring(self, c: _Call, agents: list[_Agent], now: float, out: list[Event]) -> None:
        q = c.q
        self._unqueue(c)
        c.state = _RINGING
        q.ringing += 1
        c.ring_started = now
        c.ring_tok += 1
        c.ringing = agents
        self._push_timer(now + q.s.ring_timeout_s + RING_GRACE_S, _T_RING, c, c.ring_tok)
        for a in agents:
            self._rr_seq += 1
            a.rr[q.name] = self._rr_seq
            self._set_state(a, AgentState.RINGING, now, "", out)
            a.call = c
            out.append(QueueLogEntry(now, c.id, q.name, a.id, "RINGAGENT", (a.ext, _s(q.s.ring_timeout_s))))
        out.append(
            RingAgents(
                c.id,
                q.name,
                tuple(a.id for a in agents),
                tuple(a.ext for a in agents),
                q.s.ring_timeout_s,
                c.callback is not None,
            )
        )

    # --- internals: timers ----------------------------------------------------------------------

    def _push_timer(self, when: float, kind: int, obj: Any, tok: int) -> None:
        self._timer_n += 1
        heapq.heappush(self._timers, (when, self._timer_n, kind, obj, tok))

    @staticmethod
    def _timer_live(kind: int, obj: Any, tok: int) -> bool:
        if kind == _T_WRAP:
            return bool(obj.state is AgentState.WRAP_UP and obj.wrap_tok == tok)
        if kind == _T_WAIT:
            return bool(not obj.done and obj.callback is None and obj.state <= _RINGING)
        return bool(not obj.done and obj.state == _RINGING and obj.ring_tok == tok)

    # --- invariants -----------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Assert the core's consistency (O(everything); for tests). Raises AssertionError."""
        assert not self._dirty_calls and not self._dirty_agents, "undispatched work"
        check_invariants(self._calls, self._agents.values(), self._queues.values(), self._timers)
