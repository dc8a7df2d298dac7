"""The ACD on the event loop: the sans-I/O :class:`~softswitch.acd.core.Acd` driven by calls.

- ``queue:NAME`` routes and the IVR's queue keys run :meth:`AcdService.serve_caller`: the caller
  joins, hears music with position and expected-wait announcements, may press the callback or
  voicemail key, and is bridged to the agent whose phone answers.
- The core's ``RingAgents`` become :meth:`CallSession.ring` on the caller's call (the caller keeps
  hearing music while agents ring); answers, no-answers and hangups go back to the core.
- Agents' phones dial feature codes (``*70`` login ...); registrations and expiries of agents'
  phones reach the core through the location store.
- Every ``QueueLogEntry`` goes to the queue log (SQLite + Asterisk ``queue_log``).

Routing itself is event-driven inside the core; this module only carries events both ways.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from .core import (
    Acd,
    AgentStateChanged,
    CallTimedOut,
    CancelRing,
    Joined,
    JoinRefused,
    QueueLogEntry,
    RingAgents,
)
from .settings import QueueSettings

if TYPE_CHECKING:
    from ..calls import B2BUA, Call, CallSession, RingOutcome
    from ..config import Config
    from ..location import LocationStore
    from .callbacks import CallbackStore
    from .queue_log import QueueLog

log = logging.getLogger("softswitch.acd")

QUEUE_LOG_FLUSH_S = 0.2
BUSY = (486, 600, 603)


@dataclass(eq=False)
class Waiter:
    """A caller in a queue, as this layer sees it."""

    session: CallSession
    queue: str
    outcome: asyncio.Future[str]  # "connected" | "timeout"
    ringing: dict[str, str] = field(default_factory=dict)  # extension -> agent id
    connected_agent: str | None = None
    timeout_target: str = ""


class AcdService:
    """Runs the ACD core for a switch: callers, agents' phones, timers and the queue log."""

    def __init__(
        self,
        config: Config,
        *,
        queue_log: QueueLog | None = None,
        store: LocationStore | None = None,
        voicemail: Callable[[CallSession, str], Any] | None = None,
        callbacks: CallbackStore | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.core = Acd(config.queues.values(), config.agents.values(), rng=rng or random.Random())
        self.queue_log = queue_log
        self.store = store
        self.voicemail = voicemail
        self.clock = clock
        self.waiting: dict[str, Waiter] = {}  # by caller's Call-ID, from join until the call ends
        self.callbacks = callbacks
        self.b2bua: B2BUA | None = None  # set by attach(); needed to place callback calls
        self._callback_ids: dict[str, tuple[int, str]] = {}  # entry's call id -> (request id, number)
        self._by_extension = {a.extension: a.id for a in config.agents.values()}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flusher: asyncio.Task[None] | None = None

    # ---- life cycle -----------------------------------------------------------------------
    def attach(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua

    def start(self) -> None:
        """Read which agents' phones are registered, queue the open callbacks, start the log flusher."""
        now = self.clock()
        if self.callbacks is not None:
            for cb in self.callbacks.recover(now):
                if cb.queue in self.config.queues:
                    self._queue_callback(cb.id, cb.call_id, cb.queue, cb.number, cb.requested_at)
        if self.store is not None:
            self.store.on_change = self._registration_changed
            for ext in self._by_extension:
                self._apply(self.core.set_registered(ext, bool(self.store.bindings(ext, now)), now))
        if self.queue_log is not None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_log())

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self.queue_log is not None:
            self.queue_log.close()
        if self.callbacks is not None:
            self.callbacks.close()

    async def _flush_log(self) -> None:
        assert self.queue_log is not None
        while True:
            await asyncio.sleep(QUEUE_LOG_FLUSH_S)
            try:
                self.queue_log.flush()
            except Exception:
                log.exception("queue log not written; will retry")

    # ---- events from the core -----------------------------------------------------------------
    def _apply(self, events: Iterable[Any]) -> None:
        entries: list[QueueLogEntry] = []
        for ev in events:
            if isinstance(ev, QueueLogEntry):
                entries.append(ev)
            elif isinstance(ev, RingAgents):
                self._ring(ev)
            elif isinstance(ev, CancelRing):
                w = self.waiting.get(ev.call_id)
                if w is not None and ev.extension in w.ringing:
                    del w.ringing[ev.extension]
                    w.session.withdraw(ev.extension)
            elif isinstance(ev, CallTimedOut):
                w = self.waiting.get(ev.call_id)
                if w is not None and not w.outcome.done():
                    w.timeout_target = ev.target
                    w.outcome.set_result("timeout")
            elif isinstance(ev, AgentStateChanged):
                log.info(
                    "agent %s: %s -> %s%s", ev.agent_id, ev.old.value, ev.new.value,
                    f" ({ev.reason})" if ev.reason else "",
                )  # fmt: skip
        if entries and self.queue_log is not None:
            self.queue_log.write(entries)
        self._arm_timer()

    def _arm_timer(self) -> None:
        at = self.core.next_timer()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, at - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self._apply(self.core.handle_timer(self.clock()))
        except Exception:
            log.exception("ACD timer failed")

    def _ring(self, ev: RingAgents) -> None:
        if ev.callback:
            self._ring_for_callback(ev)
            return
        w = self.waiting.get(ev.call_id)
        if w is None or w.session.ended:
            log.warning("acd: ring for a call that is gone: %s", ev.call_id)
            now = self.clock()
            for agent_id in ev.agents:
                self._apply(self.core.ring_result(ev.call_id, agent_id, now, answered=False))
            return
        rung = dict(zip(ev.extensions, ev.agents, strict=True))
        w.ringing.update(rung)
        fut = w.session.ring(list(ev.extensions), timeout=ev.timeout_s, direct=True)
        fut.add_done_callback(partial(self._ring_done, w, rung))

    def _ring_done(self, w: Waiter, rung: dict[str, str], fut: asyncio.Future[RingOutcome]) -> None:
        outcome = fut.result()
        now = self.clock()
        events: list[Any] = []
        call_id = w.session.call_id
        if outcome.answered_by is not None:
            agent_id = rung.get(outcome.answered_by)
            w.ringing.clear()
            if agent_id is not None:
                w.connected_agent = agent_id
                events += self.core.ring_result(call_id, agent_id, now, answered=True)
                if not w.outcome.done():
                    w.outcome.set_result("connected")
        elif outcome.status != 487:  # 487: withdrawn by the core, or the caller is gone
            for ext, agent_id in rung.items():
                if w.ringing.pop(ext, None) is None:
                    continue  # withdrawn from this agent already
                if outcome.status == 480 and self.store is not None and not self.store.bindings(ext, now):
                    events += self.core.set_registered(ext, False, now)
                events += self.core.ring_result(
                    call_id, agent_id, now, answered=False, busy=outcome.status in BUSY
                )
        self._apply(events)

    # ---- agents' phones ----------------------------------------------------------------------------
    def _registration_changed(self, aor: str) -> None:
        if aor not in self._by_extension or self.store is None:
            return
        now = self.clock()
        try:
            self._apply(self.core.set_registered(aor, bool(self.store.bindings(aor, now)), now))
        except Exception:
            log.exception("acd: registration update for %s failed", aor)

    def agent_command(self, agent_id: str, action: str, reason: str = "") -> list[Any]:
        """login / logout / pause / unpause for an agent (feature codes and the control socket)."""
        now = self.clock()
        core = self.core
        if action == "login":
            events = core.login(agent_id, now)
        elif action == "logout":
            events = core.logout(agent_id, now)
        elif action == "pause":
            events = core.pause(agent_id, now, reason)
        elif action == "unpause":
            events = core.unpause(agent_id, now)
        else:
            raise ValueError(f"unknown agent action {action!r}")
        self._apply(events)
        return events

    async def feature_app(self, session: CallSession) -> None:
        """``*70`` and friends dialled from an agent's phone: change state, say so, hang up."""
        found = self.config.acd.feature(session.callee)
        agent_id = self._by_extension.get(session.caller)
        session.answer()
        if found is None or agent_id is None:
            await session.play(["agent_not_agent"], barge_in=False)
            return
        action, reason = found
        self.agent_command(agent_id, action, reason)
        prompt = {"login": "agent_logged_in", "logout": "agent_logged_out", "pause": "agent_paused",
                  "unpause": "agent_unpaused"}[action]  # fmt: skip
        await session.play([prompt], barge_in=False)

    # ---- callers ----------------------------------------------------------------------------
    async def queue_app(self, session: CallSession) -> None:
        """The ``queue:NAME`` route."""
        await self.serve_caller(session, session.name)

    async def serve_caller(self, session: CallSession, queue: str) -> None:
        """Queue the caller until an agent answers (then return: the call goes on bridged) or an exit."""
        from ..media.say import say_expected_wait, say_queue_position

        q = self.config.queues.get(queue)
        if q is None:
            log.error("acd %s: no queue %r", session.call_id, queue)
            await session.play(["system_busy"], barge_in=False)
            return
        session.answer()
        now = self.clock()
        vip = q.vip_priority and session.data.get("tier") == "vip"
        loop = asyncio.get_running_loop()
        w = Waiter(session, queue, loop.create_future())
        self.waiting[session.call_id] = w
        if not getattr(session, "_acd_listening", False):
            session.listen(self._call_event)
            session._acd_listening = True  # type: ignore[attr-defined]
        events = self.core.join(session.call_id, queue, now, vip=vip, caller=session.caller)
        first = events[0] if events else None
        self._apply(events)
        if isinstance(first, JoinRefused) or not isinstance(first, Joined):
            self.waiting.pop(session.call_id, None)
            await session.play(["queue_agents_busy"], barge_in=False)
            await self._exit_to(session, q, q.on_timeout)
            return
        lang = session.language
        intro: list[str] = ["queue_please_hold", *say_queue_position(first.position, lang)]
        if first.expected_wait is not None:
            intro += say_expected_wait(max(1, round(first.expected_wait / 60)), lang)
        intro += self._options(q)
        result = await self._wait(w, q, intro)
        if result == "connected":
            return
        if result == "timeout":
            self.waiting.pop(session.call_id, None)
            await self._exit_to(session, q, w.timeout_target or q.on_timeout)
        # "gone": the caller hung up; the call listener told the core

    def _options(self, q: QueueSettings) -> list[str]:
        opts = []
        if q.callback_key:
            opts.append("queue_callback_option")
        if q.voicemail_key and self.voicemail is not None:
            opts.append("queue_voicemail_option")
        return opts

    async def _wait(self, w: Waiter, q: QueueSettings, intro: list[str]) -> str:
        """Music and announcements until connected, timed out or a key ends the wait."""
        from ..media.say import say_expected_wait, say_queue_position

        session = w.session
        loop = asyncio.get_running_loop()
        prompts: list[str] = intro
        next_announce = self.clock() + q.announce_position_every_s if q.announce_position_every_s else None
        while not w.outcome.done():
            play = loop.create_task(session.play(prompts or [q.music], barge_in=True))
            waits: set[asyncio.Future[Any]] = {play, w.outcome}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if w.outcome.done():
                play.cancel()
                break
            interrupted = not play.result()
            prompts = []
            if interrupted:
                key = await session.collect(1, terminator="", first_timeout=0.2)
                if w.outcome.done():
                    break
                if key and key in (q.callback_key, q.voicemail_key):
                    exit_to = "callback" if key == q.callback_key else f"voicemail:{q.name}"
                    if exit_to == "callback":
                        if await self._callback(session, q):
                            return "exit"
                        continue
                    if self.voicemail is not None:
                        self.waiting.pop(session.call_id, None)
                        self._apply(self.core.leave(session.call_id, self.clock(), reason="voicemail"))
                        await self.voicemail(session, _voicemail_box(q))
                        return "exit"
            now = self.clock()
            if next_announce is not None and now >= next_announce:
                next_announce = now + q.announce_position_every_s
                position = self.core.position(session.call_id)
                if position is not None:
                    prompts = say_queue_position(position, session.language)
                    ewt = self.core.expected_wait(session.call_id, now)
                    if ewt is not None:
                        prompts += say_expected_wait(max(1, round(ewt / 60)), session.language)
        return w.outcome.result()

    async def _callback(self, session: CallSession, q: QueueSettings) -> bool:
        """Confirm the number to call back, then keep the caller's place as a callback (True)."""
        from ..media.say import say_digits

        number = session.caller
        for _ in range(3):
            await session.play(["callback_confirm_before", *say_digits(number, session.language),
                                "callback_confirm_after"])  # fmt: skip
            key = await session.collect(1, terminator="", first_timeout=6.0)
            if key == "1" and number:
                now = self.clock()
                self.waiting.pop(session.call_id, None)
                request = None
                if self.callbacks is not None:
                    request = self.callbacks.add(q.name, number, session.call_id, now,
                                                 max_attempts=1 + q.callback_retries)  # fmt: skip
                if request is None:  # this number is already waiting for a callback from this queue
                    self._apply(self.core.leave(session.call_id, now, reason="key", key=q.callback_key))
                else:
                    self._callback_ids[session.call_id] = (request, number)
                    self._apply(self.core.request_callback(session.call_id, now, number=number))
                await session.play(["queue_callback_registered"], barge_in=False)
                return True
            if key == "2":
                await session.play(["callback_enter_number"])
                entered = await session.collect(20, first_timeout=8.0, inter_digit_timeout=4.0)
                if entered.isdigit():
                    number = entered
                    continue
            await session.play(["invalid_entry"])
        return False

    async def _exit_to(self, session: CallSession, q: QueueSettings, target: str) -> None:
        kind, _, arg = target.partition(":")
        if kind == "queue" and arg in self.config.queues:
            await self.serve_caller(session, arg)
        elif kind == "voicemail" and self.voicemail is not None:
            await self.voicemail(session, arg)
        else:
            await session.play(["queue_timeout", "goodbye"], barge_in=False)

    def _call_event(self, what: str, call: Call) -> None:
        """The caller's call ended or the agent transferred it."""
        w = self.waiting.get(call.call_id)
        now = self.clock()
        if w is None:
            return
        if what == "transferred":
            if w.connected_agent is not None:
                target = call.transfer.number if call.transfer is not None else ""
                self._apply(self.core.transferred(call.call_id, now, target=target))
                w.connected_agent = None
            return
        del self.waiting[call.call_id]
        if w.connected_agent is not None:
            by = "caller" if call.hangup_side == "caller" else "agent"
            self._apply(self.core.call_ended(call.call_id, now, by=by))
        else:
            w.ringing.clear()
            self._apply(self.core.leave(call.call_id, now, reason="abandon"))
            if not w.outcome.done():
                w.outcome.set_result("gone")

    # ---- callbacks: ring the agent first, then dial the customer --------------------------------
    def _queue_callback(
        self, request: int, call_id: str, queue: str, number: str, requested_at: float
    ) -> None:
        """Put a stored request (at start, or for a retry) in line as a callback entry."""
        self._callback_ids[call_id] = (request, number)
        self._apply(self.core.join_callback(call_id, queue, self.clock(), number=number, since=requested_at))

    def _ring_for_callback(self, ev: RingAgents) -> None:
        found = self._callback_ids.get(ev.call_id)
        agent_id, extension = ev.agents[0], ev.extensions[0]
        if found is None or self.b2bua is None:
            log.error("acd: callback %s cannot be placed (no request or no call layer)", ev.call_id)
            self._apply(self.core.leave(ev.call_id, self.clock(), reason="cancel"))
            return
        q = self.config.queues[ev.queue]
        app = partial(self._callback_call, ev.call_id, agent_id, q)
        fut = self.b2bua.originate(
            extension, app, caller=f"callback-{q.name}", name=q.name, timeout=ev.timeout_s
        )
        fut.add_done_callback(partial(self._callback_ring_done, ev.call_id, agent_id, extension))

    def _callback_ring_done(
        self, call_id: str, agent_id: str, extension: str, fut: asyncio.Future[RingOutcome]
    ) -> None:
        outcome = fut.result()
        now = self.clock()
        answered = outcome.answered_by is not None
        events: list[Any] = []
        store = self.store
        if (
            not answered
            and outcome.status == 480
            and store is not None
            and not store.bindings(extension, now)
        ):
            events += self.core.set_registered(extension, False, now)
        events += self.core.ring_result(
            call_id, agent_id, now, answered=answered, busy=outcome.status in BUSY
        )
        self._apply(events)

    async def _callback_call(
        self, call_id: str, agent_id: str, q: QueueSettings, session: CallSession
    ) -> None:
        """The agent answered a callback: tell them, dial the customer, bridge."""
        request, number = self._callback_ids[call_id]
        assert self.callbacks is not None
        state = {"connected": False, "settled": False}

        def settle(connected: bool) -> None:
            if state["settled"]:
                return
            state["settled"] = True
            now = self.clock()
            self._apply(self.core.callback_result(call_id, now, connected=connected))
            outcome = self.callbacks.finish(request, connected, now) if self.callbacks else "failed"
            if connected:
                state["connected"] = True
                return
            self._callback_ids.pop(call_id, None)
            if outcome == "waiting":
                cb = self.callbacks.get(request) if self.callbacks else None
                if cb is not None:
                    self._queue_callback(request, f"{cb.call_id}#{cb.attempts}", q.name, number, self.clock())

        def on_call(what: str, call: Call) -> None:
            now = self.clock()
            if what == "transferred" and state["connected"]:
                target = call.transfer.number if call.transfer is not None else ""
                self._apply(self.core.transferred(call_id, now, target=target))
            elif what == "ended":
                if state["connected"]:  # the agent is the first party of this call
                    by = "agent" if call.hangup_side == "caller" else "caller"
                    self._apply(self.core.call_ended(call_id, now, by=by))
                else:
                    settle(False)

        session.listen(on_call)
        if not self.callbacks.start_attempt(request, agent_id, self.clock()):
            log.warning("acd: callback %d is not waiting; not dialled twice", request)
            settle(False)
            return
        await session.play(["callback_agent_intro"], barge_in=False)
        ok = await session.connect(number)
        settle(ok)

    # ---- status ---------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return self.core.snapshot()


def _voicemail_box(q: QueueSettings) -> str:
    """The box the queue's voicemail key leaves a message in: on_timeout's box, else the queue's name."""
    kind, _, arg = q.on_timeout.partition(":")
    return arg if kind == "voicemail" and arg else q.name
