"""Calls: the B2BUA that connects a caller to a callee through the media engine.

Every call has two dialogs: the A leg (the caller's INVITE, answered by us)
and the B leg (our INVITE to the callee; all registered contacts are rung in
parallel and the first 2xx wins). Media is anchored: each side talks RTP to its
own :class:`~softswitch.media.leg.Leg`, and the engine bridges the two legs, so
the call can be recorded. Signalling is event-driven: the switch core hands
requests, responses and timeouts to :class:`B2BUA`, which queues the bytes to
send; media events (RTP timeout) arrive from the engine and are flushed through
the ``flush`` callback.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cdr import CallRecord, CdrStore, Disposition, HangupSide
from .config import Config
from .location import LocationStore
from .media.engine import MediaEngine, RtpTimeout
from .media.leg import Leg, MediaError, MediaEvent
from .media.remote import WorkerDied
from .sip import sdp
from .sip.auth import DigestAuthenticator
from .sip.dialog import (
    Dialog,
    DialogState,
    SessionTimer,
    dialog_id_of_request,
    make_cancel,
    negotiate_session_timer,
)
from .sip.errors import SipError
from .sip.headers import parse_name_addr
from .sip.ids import IdGenerator
from .sip.message import Headers, Request, Response, make_response
from .sip.peer import Peer
from .sip.stack import SipStack, Transmit
from .sip.transaction import ClientTransaction, InviteServerTransaction, ServerTransaction, State
from .sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    from .media.recorder import Recording

App = Callable[["CallSession"], Awaitable[None]]

log = logging.getLogger("softswitch.calls")

APP_KINDS = ("ivr", "queue", "voicemail", "feature")
T1 = 0.5
T2 = 4.0
FAILURE_MAP = {486: 486, 600: 486, 603: 603, 404: 404, 408: 408, 480: 480, 487: 487, 488: 488}


class CallState(enum.Enum):
    ROUTING = "routing"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(eq=False)
class Fork:
    """One INVITE to one registered contact of the callee."""

    invite: Request
    peer: Peer
    txn: ClientTransaction | None = None
    provisional: bool = False
    cancel_pending: bool = False
    done: bool = False
    transfer: bool = False  # an INVITE to a REFER's target
    number: str = ""  # the number rung (several for an ACD ring-all)
    withdrawn: bool = False  # no longer wanted (ring withdrawn or timed out): a late 2xx is hung up


@dataclass(eq=False)
class Transfer:
    """A blind transfer in progress (RFC 3515): the callee referred the caller elsewhere."""

    transferor: Dialog
    number: str
    media: Leg
    sdp: sdp.LocalSession
    call_id: str
    tag: str
    forks: list[Fork] = field(default_factory=list)


@dataclass(eq=False)
class Call:
    """One caller-to-callee call and its two dialogs."""

    call_id: str
    caller: str
    callee: str
    route_target: str
    a_invite: Request  # the caller's INVITE; ours to the first party for an originated call
    a_txn: InviteServerTransaction | None  # None: the switch originated the call (a callback)
    a_peer: Peer
    a_tag: str
    a_media: Leg
    b_media: Leg | None
    a_sdp: sdp.LocalSession
    b_sdp: sdp.LocalSession | None
    start: float
    b_call_id: str
    b_tag: str
    state: CallState = CallState.ROUTING
    forks: list[Fork] = field(default_factory=list)
    a_dialog: Dialog | None = None
    b_dialog: Dialog | None = None
    b_invite: Request | None = None
    answer: float | None = None
    end: float | None = None
    disposition: str = "failed"
    sip_code: int | None = None
    hangup_side: str | None = None
    recording: Recording | None = None
    recording_path: str | None = None
    best_failure: int = 0
    a_ok: Response | None = None  # our 2xx to the caller, resent until the ACK
    session_timer: SessionTimer | None = None
    session_deadline: float | None = None
    early_media: bool = False
    transfer: Transfer | None = None
    app_task: asyncio.Task[None] | None = None
    connect_waiter: asyncio.Future[RingOutcome] | None = None  # an application's ring() in progress
    ring_deadline: float = 0.0
    # told "ended" when the call ends and "transferred" when the called party REFERs it away
    listeners: list[Callable[[str, Call], None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RingOutcome:
    """How an application's ring ended: the number that answered, or the failure status."""

    answered_by: str | None
    status: int  # 200 answered; 486 busy, 408/480 no answer, 487 withdrawn or caller gone, 404 ...


class B2BUA:
    """Routes INVITEs, forks to registered contacts, bridges media, writes CDRs."""

    def __init__(
        self,
        config: Config,
        stack: SipStack,
        ids: IdGenerator,
        store: LocationStore,
        auth: DigestAuthenticator,
        media: MediaEngine,
        cdr: CdrStore | None,
        *,
        local: dict[str, tuple[str, int]],
        clock: Callable[[], tuple[float, float]],
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.stack = stack
        self.ids = ids
        self.store = store
        self.auth = auth
        self.media = media
        self.cdr = cdr
        self.local = local
        self.clock = clock
        self.executor = executor
        self.flush: Callable[[], None] = lambda: None
        self.pending: list[Transmit] = []
        self.calls: dict[str, Call] = {}  # by A-leg Call-ID
        self._by_b_call_id: dict[str, Call] = {}
        self._by_txn: dict[int, tuple[Call, Fork]] = {}
        self._originating: dict[int, tuple[Call, Fork, App]] = {}  # our INVITE of an originated call
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.stats = {"calls": 0, "answered": 0, "failed": 0, "rejected_busy": 0}
        # applications that answer calls themselves, by route kind: "ivr", "queue", "voicemail"
        self.apps: dict[str, App] = {}

    # ---- plumbing -----------------------------------------------------------
    def _out(self, events: list[Any]) -> None:
        self.pending.extend(e for e in events if isinstance(e, Transmit))

    def _respond(self, txn: ServerTransaction, resp: Response) -> None:
        now, _ = self.clock()
        self._out(self.stack.respond(txn, resp, now))

    def _send_request(self, req: Request, peer: Peer) -> ClientTransaction:
        now, _ = self.clock()
        txn, events = self.stack.request(req, peer, now)
        self._out(events)
        return txn

    def _new_leg(self, near: Leg | None = None) -> Leg:
        """A media leg (next to ``near``'s, for legs to be bridged); out of RTP ports: 503."""
        try:
            return self.media.create_leg(near=near)
        except MediaError as e:
            log.warning("no media leg: %s", e)
            raise SipError(503, "Service Unavailable (no media ports)", [("Retry-After", "5")]) from None

    def _at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), fn))

    def next_timer(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def handle_timer(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:
                log.exception("call timer failed")

    def _via(self, transport: str) -> tuple[str, str, int]:
        t = transport if transport in self.local else "udp"
        host, port = self.local[t]
        return t, host, port

    def _contact(self, transport: str) -> str:
        t, host, port = self._via(transport)
        h = f"[{host}]" if ":" in host else host
        return f"<sip:switch@{h}:{port};transport={t}>"

    # ---- new calls ------------------------------------------------------------
    def invite(
        self, req: Request, txn: InviteServerTransaction, caller: str, target: str, number: str
    ) -> None:
        """A new authenticated INVITE routed to ``target`` (``extension`` or ``trunk:NAME``)."""
        now, wall = self.clock()
        if len(self.calls) >= self.config.max_calls:
            self.stats["rejected_busy"] += 1
            raise SipError(503, "Service Unavailable (call limit)", [("Retry-After", "5")])
        kind, _, app_name = target.partition(":")
        app = self.apps.get(kind) if kind in APP_KINDS else None
        destinations = [] if app is not None else self._destinations(target, number, wall)
        if (req.headers.get("Content-Type") or "").split(";")[
            0
        ].strip().lower() != "application/sdp" or not req.body:
            raise SipError(488, "Not Acceptable Here (an SDP offer is required)")
        offer = sdp.parse(req.body)
        timer = negotiate_session_timer(req)
        a_media = self._new_leg()
        b_media: Leg | None = None
        if app is None:
            try:
                b_media = self._new_leg(near=a_media)
            except Exception:
                self.media.release(a_media)
                raise
        host = self.media.host
        sid = int(wall)
        a_sdp = sdp.LocalSession(address=host, port=a_media.port, session_id=sid)
        b_sdp = sdp.LocalSession(address=host, port=b_media.port, session_id=sid + 1) if b_media else None
        call = Call(
            call_id=req.call_id, caller=caller, callee=number, route_target=target, a_invite=req, a_txn=txn,
            a_peer=txn.peer, a_tag=self.ids.tag(), a_media=a_media, b_media=b_media, a_sdp=a_sdp, b_sdp=b_sdp,
            start=wall, b_call_id=self.ids.call_id(host), b_tag=self.ids.tag(),
        )  # fmt: skip
        try:
            _, neg = a_sdp.answer(offer)
        except SipError:
            self._release_media(call)
            raise
        a_media.configure(codec=neg.codec, payload_type=neg.payload_type,
                          telephone_event_pt=neg.telephone_event_pt, remote=neg.remote)  # fmt: skip
        call.session_timer = timer
        self.calls[call.call_id] = call
        self._by_b_call_id[call.b_call_id] = call
        self.stats["calls"] += 1
        a_media.on_event = partial(self._media_event, call)
        if app is not None:
            session = CallSession(self, call, app_name)
            call.app_task = asyncio.get_running_loop().create_task(self._run_app(call, app, session))
            log.info("call %s: %s -> %s (%s)", call.call_id, caller, number, target)
            return
        assert b_media is not None and b_sdp is not None
        b_media.on_event = partial(self._media_event, call)
        b_offer = b_sdp.offer().to_bytes()
        for uri, peer in destinations:
            self._fork(call, uri, peer, b_offer)
        call.ring_deadline = now + self.config.ring_timeout_s
        self._at(call.ring_deadline, partial(self._ring_timeout, call, call.ring_deadline))
        log.info(
            "call %s: %s -> %s (%s, %d contacts)", call.call_id, caller, number, target, len(destinations)
        )

    # ---- calls the switch places (queue callbacks) ------------------------------------------------
    def originate(
        self, number: str, app: App, *, caller: str, name: str, timeout: float | None = None
    ) -> asyncio.Future[RingOutcome]:
        """Call extension ``number`` and run ``app`` on the call once it answers (e.g. a callback
        that rings the agent first, then dials the customer with :meth:`CallSession.connect`).

        The future tells how the ring ended; ``caller`` is who the call shows as from.
        """
        waiter: asyncio.Future[RingOutcome] = asyncio.get_running_loop().create_future()
        now, wall = self.clock()
        try:
            if len(self.calls) >= self.config.max_calls:
                raise SipError(503, "Service Unavailable (call limit)")
            ((uri, peer), *_) = self._destinations("extension", number, wall)
            a_media = self._new_leg()
        except SipError as e:
            log.info("cannot call %s: %s", number, e.reason)
            waiter.set_result(RingOutcome(None, e.status))
            return waiter
        host = self.media.host
        a_sdp = sdp.LocalSession(address=host, port=a_media.port, session_id=int(wall))
        t, vhost, vport = self._via(peer.transport)
        h = f"[{vhost}]" if ":" in vhost else vhost
        call_id, tag = self.ids.call_id(host), self.ids.tag()
        headers = Headers(
            [
                ("Via", f"SIP/2.0/{t.upper()} {h}:{vport};branch={self.ids.branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{caller}@{self.config.domain}>;tag={tag}"),
                ("To", f"<sip:{number}@{self.config.domain}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", self._contact(peer.transport)),
                ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO"),
                ("Content-Type", "application/sdp"),
            ]
        )
        invite = Request("INVITE", uri, headers, a_sdp.offer().to_bytes())
        call = Call(
            call_id=call_id, caller=caller, callee=number, route_target=f"originate:{name}", a_invite=invite,
            a_txn=None, a_peer=peer, a_tag=tag, a_media=a_media, b_media=None, a_sdp=a_sdp, b_sdp=None,
            start=wall, b_call_id=self.ids.call_id(host), b_tag=self.ids.tag(),
        )  # fmt: skip
        call.connect_waiter = waiter
        a_media.on_event = partial(self._media_event, call)
        self.calls[call_id] = call
        self._by_b_call_id[call.b_call_id] = call
        self.stats["calls"] += 1
        fork = Fork(invite, peer, number=number)
        fork.txn = self._send_request(invite, peer)
        self._originating[id(fork.txn)] = (call, fork, app)
        call.ring_deadline = now + (self.config.ring_timeout_s if timeout is None else timeout)
        self._at(call.ring_deadline, partial(self._origin_timeout, call, fork))
        log.info("call %s: calling %s for %s", call_id, number, name)
        self.flush()
        return waiter

    def _origin_response(self, call: Call, fork: Fork, app: App, resp: Response) -> None:
        status = resp.status
        if status < 200:
            fork.provisional = True
            if fork.cancel_pending:
                self._cancel_fork(fork)
            return
        self._originating.pop(id(fork.txn), None)
        fork.done = True
        if status >= 300:
            self._origin_failed(call, status)
            return
        dialog = Dialog.from_uac(fork.invite, resp, fork.peer)
        dialog.local_contact = self._contact(fork.peer.transport)
        self._send_ack(dialog, resp.cseq.seq)
        if call.state == CallState.ENDED or fork.withdrawn:
            self._bye(dialog)
            return
        try:
            neg = call.a_sdp.accept_answer(sdp.parse(resp.body))
        except SipError as e:
            log.warning("call %s: unusable answer: %s", call.call_id, e.reason)
            self._bye(dialog)
            self._origin_failed(call, 488)
            return
        call.a_media.configure(codec=neg.codec, payload_type=neg.payload_type,
                               telephone_event_pt=neg.telephone_event_pt, remote=neg.remote)  # fmt: skip
        _, wall = self.clock()
        call.a_dialog = dialog
        call.state = CallState.ANSWERED
        call.answer = wall
        self.stats["answered"] += 1
        waiter, call.connect_waiter = call.connect_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(RingOutcome(fork.number, 200))
        self._start_recording(call, wall)
        session = CallSession(self, call, call.route_target.partition(":")[2])
        call.app_task = asyncio.get_running_loop().create_task(self._run_app(call, app, session))

    def _origin_timeout(self, call: Call, fork: Fork) -> None:
        if call.state != CallState.ROUTING or fork.done:
            return
        fork.withdrawn = True
        self._cancel_fork(fork)
        self._origin_failed(call, 408)

    def _origin_failed(self, call: Call, status: int) -> None:
        if call.state == CallState.ENDED:
            return
        call.sip_code = status
        call.best_failure = status
        call.disposition = {486: "busy", 600: "busy", 408: "no-answer", 480: "no-answer"}.get(
            status, "failed"
        )
        waiter = call.connect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(RingOutcome(None, FAILURE_MAP.get(status, status)))
        self.stats["failed"] += 1
        self._finish(call)

    async def _run_app(self, call: Call, app: App, session: CallSession) -> None:
        try:
            await app(session)
        except asyncio.CancelledError:
            pass  # the caller hung up
        except Exception:
            log.exception("call %s: application failed", call.call_id)
        finally:
            if call.state != CallState.ENDED and call.b_dialog is None:
                session.hangup()  # the application returned without connecting the caller anywhere

    def ring(
        self, call: Call, numbers: Sequence[str], *, timeout: float | None = None, direct: bool = False
    ) -> asyncio.Future[RingOutcome]:
        """Ring ``numbers`` at once for an answered application call; bridge the first to answer.

        ``direct``: the numbers are extensions (agents' phones), not looked up in the dial plan.
        The caller keeps hearing what the application plays until an answer bridges it.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[RingOutcome] = loop.create_future()
        if call.state == CallState.ENDED or call.b_dialog is not None or call.forks:
            waiter.set_result(RingOutcome(None, 487 if call.state == CallState.ENDED else 491))
            return waiter
        now, wall = self.clock()
        targets: list[tuple[str, str, Peer]] = []
        failure, route_to = 0, ""
        for number in numbers:
            try:
                route = None if direct else self.config.route(number)
                if not direct and route is None:
                    raise SipError(404, "Not Found")
                target = route.to if route is not None else "extension"
                route_to = route_to or target
                targets.extend((number, uri, peer) for uri, peer in self._destinations(target, number, wall))
            except SipError as e:
                log.info("call %s: cannot ring %s: %s", call.call_id, number, e.reason)
                failure = _better_failure(failure, e.status)
        try:
            if not targets:
                raise SipError(failure or 404, "")
            call.b_media = self._new_leg(near=call.a_media)
        except SipError as e:
            waiter.set_result(RingOutcome(None, e.status))
            return waiter
        call.b_media.on_event = partial(self._media_event, call)
        call.b_sdp = sdp.LocalSession(
            address=self.media.host, port=call.b_media.port, session_id=int(wall) + 1
        )
        call.callee, call.route_target, call.connect_waiter = targets[0][0], route_to, waiter
        call.best_failure = 0
        offer = call.b_sdp.offer().to_bytes()
        for number, uri, peer in targets:
            self._fork(call, uri, peer, offer, number=number)
        call.ring_deadline = now + (self.config.ring_timeout_s if timeout is None else timeout)
        self._at(call.ring_deadline, partial(self._ring_timeout, call, call.ring_deadline))
        self.flush()
        return waiter

    def withdraw(self, call: Call, number: str | None = None) -> None:
        """Stop ringing ``number`` (every number when None) for an application's ring()."""
        forks = [f for f in call.forks if number is None or f.number == number]
        self._withdraw_forks(call, forks)
        if call.b_dialog is None and call.connect_waiter is not None and not call.forks:
            call.best_failure = 487
            self._connect_failed(call)
        self.flush()

    def _withdraw_forks(self, call: Call, forks: list[Fork]) -> None:
        for fork in forks:
            self._cancel_fork(fork)
            fork.withdrawn = True
            if fork in call.forks:
                call.forks.remove(fork)

    def _destinations(self, target: str, number: str, wall: float) -> list[tuple[str, Peer]]:
        if target.startswith("trunk:"):
            trunk = self.config.trunks[target[6:]]
            host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
            return [(f"sip:{number}@{host}:{trunk.port}", Peer(trunk.transport, trunk.host, trunk.port))]
        if target != "extension":
            kind = target.split(":", 1)[0]
            raise SipError(501, f"Not Implemented ({kind} routing is not available yet)")
        if number not in self.config.accounts:
            raise SipError(404, "Not Found")
        out = []
        for b in self.store.bindings(number, wall):
            try:
                uri = parse_uri(b.contact)
            except SipError:
                continue
            if not isinstance(uri, SipUri):
                continue
            transport = (uri.transport or "udp").lower()
            src_transport, _, src_addr = b.source.partition(":")
            if transport == "udp" or src_transport != transport:
                port = uri.port or (5061 if uri.scheme == "sips" else 5060)
                peer = Peer(transport, uri.host.strip("[]"), port)
            else:  # stream transports: reuse the connection the phone registered over
                shost, _, sport = src_addr.rpartition(":")
                peer = Peer(transport, shost, int(sport))
            out.append((b.contact, peer))
        if not out:
            raise SipError(480, "Temporarily Unavailable (not registered)")
        return out

    def _fork(
        self,
        call: Call,
        uri: str,
        peer: Peer,
        offer: bytes,
        *,
        transfer: Transfer | None = None,
        number: str | None = None,
    ) -> None:
        a = call.a_invite
        call_id = transfer.call_id if transfer else call.b_call_id
        tag = transfer.tag if transfer else call.b_tag
        callee = transfer.number if transfer else number or call.callee
        t, host, port = self._via(peer.transport)
        h = f"[{host}]" if ":" in host else host
        mf = a.max_forwards
        headers = Headers(
            [
                ("Via", f"SIP/2.0/{t.upper()} {h}:{port};branch={self.ids.branch()};rport"),
                ("Max-Forwards", str(max(0, (mf if mf is not None else 70) - 1))),
                ("From", f"<sip:{call.caller}@{self.config.domain}>;tag={tag}"),
                ("To", f"<sip:{callee}@{self.config.domain}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", self._contact(peer.transport)),
                ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO"),
                ("Content-Type", "application/sdp"),
            ]
        )
        invite = Request("INVITE", uri, headers, offer)
        fork = Fork(invite, peer, transfer=transfer is not None, number=callee)
        (transfer.forks if transfer else call.forks).append(fork)
        fork.txn = self._send_request(invite, peer)
        self._by_txn[id(fork.txn)] = (call, fork)

    # ---- responses from callees ----------------------------------------------------------
    def response(self, resp: Response, txn: ClientTransaction) -> None:
        found = self._by_txn.get(id(txn))
        if found is None:
            origin = self._originating.get(id(txn))
            if origin is not None and txn.request.method == "INVITE":
                self._origin_response(*origin, resp)
            return
        call, fork = found
        method = txn.request.method
        if method != "INVITE":
            return
        status = resp.status
        if fork.transfer:
            self._transfer_response(call, fork, resp)
            return
        if status < 200:
            self._provisional(call, fork, resp)
        elif status < 300:
            self._answered(call, fork, resp)
        else:
            self._fork_failed(call, fork, status)

    def stray_response(self, resp: Response) -> None:
        """A 2xx retransmission from the callee: ACK it again."""
        if resp.status < 200 or resp.status >= 300:
            return
        call = self._by_b_call_id.get(resp.call_id)
        if call is None:
            origin = self.calls.get(resp.call_id)
            if origin is not None and origin.a_txn is None and origin.a_dialog is not None:
                self._send_ack(origin.a_dialog, resp.cseq.seq)  # an originated call's first party
            return
        if call.b_dialog is None or resp.cseq.method != "INVITE":
            return
        self._ack_b(call, resp.cseq.seq)

    def timeout(self, txn: ClientTransaction) -> None:
        origin = self._originating.get(id(txn))
        if origin is not None and txn.request.method == "INVITE":
            self._origin_failed(origin[0], 408)
            return
        found = self._by_txn.get(id(txn))
        if found is not None and txn.request.method == "INVITE":
            self._fork_failed(found[0], found[1], 408)

    def _provisional(self, call: Call, fork: Fork, resp: Response) -> None:
        fork.provisional = True
        if (
            fork.cancel_pending
            or fork.withdrawn
            or call.state == CallState.ENDED
            or call.b_dialog is not None
        ):
            self._cancel_fork(fork)
            return
        if call.answer is not None:
            return  # an application's ring(): the caller keeps hearing the application
        if resp.status == 183 and resp.body and not call.early_media:
            self._early_media(call, resp)
        elif resp.status in (180, 183) and call.state == CallState.ROUTING:
            call.state = CallState.RINGING
            ring = make_response(call.a_invite, 180, to_tag=call.a_tag)
            ring.headers.add("Contact", self._contact(call.a_peer.transport))
            assert call.a_txn is not None  # only for calls that came in
            self._respond(call.a_txn, ring)

    def _early_media(self, call: Call, resp: Response) -> None:
        """183 with SDP: bridge now so the caller hears the callee's tones or announcements."""
        assert call.b_sdp is not None and call.b_media is not None
        try:
            neg = call.b_sdp.accept_answer(sdp.parse(resp.body))
        except SipError as e:
            log.info("call %s: unusable early media SDP: %s", call.call_id, e.reason)
            return
        call.b_media.configure(codec=neg.codec, payload_type=neg.payload_type,
                               telephone_event_pt=neg.telephone_event_pt, remote=neg.remote)  # fmt: skip
        self.media.bridge(call.a_media, call.b_media)
        call.early_media = True
        call.state = CallState.RINGING
        progress = make_response(call.a_invite, 183, to_tag=call.a_tag)
        progress.headers.add("Contact", self._contact(call.a_peer.transport))
        progress.headers.add("Content-Type", "application/sdp")
        last = call.a_sdp.last_sent
        assert last is not None
        progress.body = last.to_bytes()
        assert call.a_txn is not None  # only for calls that came in
        self._respond(call.a_txn, progress)

    def _answered(self, call: Call, fork: Fork, resp: Response) -> None:
        fork.done = True
        if call.state == CallState.ENDED or call.b_dialog is not None or fork.withdrawn:
            # a second fork answered (or the caller gave up, or the ring was withdrawn): ACK and hang up
            late = Dialog.from_uac(fork.invite, resp, fork.peer)
            late.local_contact = self._contact(fork.peer.transport)
            self._send_ack(late, resp.cseq.seq)
            self._bye(late)
            return
        b_dialog = Dialog.from_uac(fork.invite, resp, fork.peer)
        b_dialog.local_contact = self._contact(fork.peer.transport)
        call.b_dialog = b_dialog
        call.b_invite = fork.invite
        self._ack_b(call, resp.cseq.seq)
        assert call.b_sdp is not None and call.b_media is not None
        try:
            neg = call.b_sdp.accept_answer(sdp.parse(resp.body))
        except SipError as e:
            log.warning("call %s: callee's answer unusable: %s", call.call_id, e.reason)
            self._bye(b_dialog)
            call.b_dialog = None
            self._fork_failed(call, fork, 488)
            return
        call.b_media.configure(codec=neg.codec, payload_type=neg.payload_type,
                               telephone_event_pt=neg.telephone_event_pt, remote=neg.remote)  # fmt: skip
        self._withdraw_forks(call, [f for f in call.forks if f is not fork and not f.done])
        self.media.bridge(call.a_media, call.b_media)
        call.callee = fork.number or call.callee
        if call.connect_waiter is not None and not call.connect_waiter.done():
            call.connect_waiter.set_result(RingOutcome(call.callee, 200))
        if call.answer is None:
            self.answer_caller(call)
        log.info("call %s connected to %s", call.call_id, call.callee)

    def answer_caller(self, call: Call) -> None:
        """Send our 2xx to the caller (resent until the ACK) and start the answered-call duties."""
        now, wall = self.clock()
        call.state = CallState.ANSWERED
        call.answer = wall
        self.stats["answered"] += 1
        ok = make_response(call.a_invite, 200, to_tag=call.a_tag)
        ok.headers.add("Contact", self._contact(call.a_peer.transport))
        ok.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO, UPDATE")
        if call.session_timer is not None:
            for name, value in call.session_timer.response_headers():
                ok.headers.add(name, value)
        ok.headers.add("Content-Type", "application/sdp")
        last = call.a_sdp.last_sent
        assert last is not None
        ok.body = last.to_bytes()
        call.a_dialog = Dialog.from_uas(call.a_invite, ok, call.a_peer)
        call.a_dialog.local_contact = self._contact(call.a_peer.transport)
        call.a_ok = ok
        assert call.a_txn is not None  # only for calls that came in
        self._respond(call.a_txn, ok)
        if not call.a_peer.reliable:
            self._at(now + T1, partial(self._resend_ok, call, ok, T1, now))
        if call.session_timer is not None:
            self._arm_session_timer(call, now)
        self._start_recording(call, wall)

    def _resend_ok(self, call: Call, ok: Response, interval: float, started: float) -> None:
        """§13.3.1.4: resend our 2xx, T1 doubling to T2, until the ACK comes or 64*T1 pass."""
        if call.a_ok is not ok or call.state != CallState.ANSWERED:
            return
        now, _ = self.clock()
        if now - started >= 64 * T1:
            log.warning("call %s: no ACK for our 2xx; hanging up", call.call_id)
            call.a_ok = None
            self._hangup(call, "system", send_a=True, send_b=True)
            return
        self.pending.append(self.stack.send_stateless(ok, call.a_peer))
        nxt = min(2 * interval, T2)
        self._at(now + nxt, partial(self._resend_ok, call, ok, nxt, started))

    def _fork_failed(self, call: Call, fork: Fork, status: int) -> None:
        fork.done = True
        self._by_txn.pop(id(fork.txn), None)
        if call.state == CallState.ENDED or call.b_dialog is not None or fork.withdrawn:
            return
        call.best_failure = _better_failure(call.best_failure, status)
        if call.answer is not None:  # an application's connect() failed; the caller stays with the app
            if all(f.done for f in call.forks):
                self._connect_failed(call)
            return
        if all(f.done for f in call.forks):
            self._fail(
                call,
                FAILURE_MAP.get(call.best_failure, 480 if call.best_failure >= 500 else call.best_failure),
            )

    def _fail(self, call: Call, status: int, reason: str | None = None) -> None:
        if call.state == CallState.ENDED:
            return
        if call.a_txn is not None and call.a_txn.state in (State.PROCEEDING, State.TRYING):
            self._respond(call.a_txn, make_response(call.a_invite, status, reason, to_tag=call.a_tag))
        call.sip_code = status
        call.disposition = {486: "busy", 487: "cancelled", 408: "no-answer", 480: "no-answer"}.get(
            status, "failed"
        )
        if status == 480 and call.best_failure not in (0, 480):
            call.disposition = "failed"
        self.stats["failed"] += 1
        self._finish(call)

    def _connect_failed(self, call: Call) -> None:
        if call.b_media is not None:
            self.media.release(call.b_media)
        call.b_media = call.b_sdp = None
        self._withdraw_forks(call, list(call.forks))
        if call.connect_waiter is not None and not call.connect_waiter.done():
            status = FAILURE_MAP.get(
                call.best_failure, 480 if call.best_failure >= 500 else call.best_failure
            )
            call.connect_waiter.set_result(RingOutcome(None, status or 480))

    def _ring_timeout(self, call: Call, deadline: float) -> None:
        if deadline != call.ring_deadline:
            return  # an earlier attempt's timer
        if call.answer is not None and call.b_dialog is None and call.forks:
            call.best_failure = 408  # an application's ring() was not answered
            self._connect_failed(call)
            return
        if call.state in (CallState.ROUTING, CallState.RINGING):
            log.info("call %s: no answer after %.0f s", call.call_id, self.config.ring_timeout_s)
            for fork in call.forks:
                if not fork.done:
                    self._cancel_fork(fork)
            call.best_failure = 480
            self._fail(call, 480, "Temporarily Unavailable (no answer)")
            call.disposition = "no-answer"

    def _cancel_fork(self, fork: Fork) -> None:
        if fork.done:
            return
        if not fork.provisional:
            fork.cancel_pending = True  # §9.1: CANCEL only after a provisional response
            return
        fork.done = True
        fork.cancel_pending = False
        self._send_request(make_cancel(fork.invite), fork.peer)

    # ---- requests in calls ------------------------------------------------------------
    def cancel(
        self, req: Request, txn: ServerTransaction, target: InviteServerTransaction | None
    ) -> Response:
        """CANCEL from the caller (§9.2): 200 for the CANCEL; the INVITE gets 487."""
        call = self.calls.get(req.call_id)
        if target is None or call is None or call.a_txn is not target:
            raise SipError(481, "Call/Transaction Does Not Exist")
        if call.state in (CallState.ROUTING, CallState.RINGING):
            for fork in call.forks:
                self._cancel_fork(fork)
            call.hangup_side = "caller"
            self._fail(call, 487)
        return make_response(req, 200)

    def ack(self, req: Request) -> None:
        call = self.calls.get(req.call_id)
        if call is not None and call.a_ok is not None and req.cseq.seq == call.a_ok.cseq.seq:
            call.a_ok = None  # stop resending our 2xx

    def in_dialog(self, req: Request, txn: ServerTransaction) -> Response | None:
        """A request inside one of our dialogs; None when it is not ours."""
        call = self.calls.get(req.call_id) or self._by_b_call_id.get(req.call_id)
        if call is None:
            return None
        a_side = req.call_id == call.call_id
        dialog = call.a_dialog if a_side else call.b_dialog
        if dialog is None or dialog_id_of_request(req) != dialog.id:
            return None
        dialog.accept_request(req)
        method = req.method
        if method == "BYE":
            resp = make_response(req, 200)
            if not a_side and call.transfer is not None:
                return resp  # a blind transferor leaves; the caller waits for the transfer target
            self._hangup(call, "caller" if a_side else "callee", send_a=not a_side, send_b=a_side)
            return resp
        if method in ("INVITE", "UPDATE"):
            return self._reinvite(call, req, a_side)
        if method in ("OPTIONS", "INFO"):
            return make_response(req, 200)
        if method == "REFER":
            return self._refer(call, req, a_side)
        raise SipError(
            405, "Method Not Allowed", [("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER")]
        )

    def _reinvite(self, call: Call, req: Request, a_side: bool) -> Response:
        """Hold/resume, codec change or session refresh: answered locally (media is anchored here)."""
        session = call.a_sdp if a_side else call.b_sdp
        leg = call.a_media if a_side else call.b_media
        assert session is not None and leg is not None
        resp = make_response(req, 200)
        resp.headers.add("Contact", self._contact(req.top_via.transport.lower()))
        if req.body:
            _, neg = session.answer(sdp.parse(req.body))
            leg.configure(codec=neg.codec, payload_type=neg.payload_type,
                          telephone_event_pt=neg.telephone_event_pt, remote=neg.remote)  # fmt: skip
        last = session.last_sent
        if last is not None and (req.body or req.method == "INVITE"):
            resp.headers.add("Content-Type", "application/sdp")
            resp.body = last.to_bytes()
        if call.session_timer is not None and a_side:
            for name, value in call.session_timer.response_headers():
                resp.headers.add(name, value)
            now, _ = self.clock()
            self._arm_session_timer(call, now)
        return resp

    # ---- blind transfer (REFER) -------------------------------------------------------------
    def _refer(self, call: Call, req: Request, a_side: bool) -> Response:
        """The called party (an agent) transfers the caller to another extension (RFC 3515)."""
        if a_side:
            raise SipError(403, "Forbidden (only the called party can transfer)")
        if call.state != CallState.ANSWERED or call.transfer is not None or call.b_dialog is None:
            raise SipError(491, "Request Pending")
        refer_to = req.headers.get("Refer-To")
        if refer_to is None:
            raise SipError(400, "Missing Refer-To")
        target_uri = parse_name_addr(refer_to).uri
        if not isinstance(target_uri, SipUri) or not target_uri.user:
            raise SipError(400, "Bad Refer-To (a sip URI with a number is needed)")
        number = target_uri.user
        route = self.config.route(number)
        if route is None:
            raise SipError(404, "Not Found (no route for the transfer target)")
        _, wall = self.clock()
        destinations = self._destinations(route.to, number, wall)
        media = self._new_leg(near=call.a_media)
        session = sdp.LocalSession(address=self.media.host, port=media.port, session_id=int(wall) + 2)
        transfer = Transfer(
            call.b_dialog, number, media, session, self.ids.call_id(self.media.host), self.ids.tag()
        )
        call.transfer = transfer
        self._by_b_call_id[transfer.call_id] = call
        media.on_event = partial(self._media_event, call)
        offer = session.offer().to_bytes()
        for uri, peer in destinations:
            self._fork(call, uri, peer, offer, transfer=transfer)
        self._notify(transfer, "SIP/2.0 100 Trying", final=False)
        log.info("call %s: transfer to %s", call.call_id, number)
        self._tell(call, "transferred")
        accepted = make_response(req, 202)
        accepted.headers.add("Contact", self._contact(req.top_via.transport.lower()))
        return accepted

    def _notify(self, transfer: Transfer, frag: str, *, final: bool) -> None:
        dialog = transfer.transferor
        if dialog.state == DialogState.TERMINATED:
            return
        t, host, port = self._via(dialog.peer.transport)
        state = "terminated;reason=noresource" if final else "active;expires=60"
        notify = dialog.new_request(
            "NOTIFY", body=(frag + "\r\n").encode(), content_type="message/sipfrag;version=2.0",
            extra_headers=[("Event", "refer"), ("Subscription-State", state)],
            branch=self.ids.branch(), via_host=host, via_port=port, transport=t,
        )  # fmt: skip
        self._send_request(notify, dialog.peer)

    def _transfer_response(self, call: Call, fork: Fork, resp: Response) -> None:
        transfer = call.transfer
        if transfer is None or fork not in transfer.forks:
            if 200 <= resp.status < 300:  # too late: ACK and hang up
                late = Dialog.from_uac(fork.invite, resp, fork.peer)
                self._send_ack(late, resp.cseq.seq)
                self._bye(late)
            return
        status = resp.status
        if status < 200:
            fork.provisional = True
            if fork.cancel_pending:
                self._cancel_fork(fork)
            elif status == 180:
                self._notify(transfer, "SIP/2.0 180 Ringing", final=False)
            return
        fork.done = True
        self._by_txn.pop(id(fork.txn), None)
        if status >= 300:
            if all(f.done for f in transfer.forks):
                self._notify(transfer, f"SIP/2.0 {status} {resp.reason}", final=True)
                self.media.release(transfer.media)
                self._by_b_call_id.pop(transfer.call_id, None)
                call.transfer = None
            return
        dialog = Dialog.from_uac(fork.invite, resp, fork.peer)
        dialog.local_contact = self._contact(fork.peer.transport)
        self._send_ack(dialog, resp.cseq.seq)
        try:
            neg = transfer.sdp.accept_answer(sdp.parse(resp.body))
        except SipError:
            self._bye(dialog)
            return
        for other in transfer.forks:
            if other is not fork and not other.done:
                self._cancel_fork(other)
        transfer.media.configure(codec=neg.codec, payload_type=neg.payload_type,
                                 telephone_event_pt=neg.telephone_event_pt, remote=neg.remote)  # fmt: skip
        old_media, old_call_id = call.b_media, call.b_call_id
        assert old_media is not None
        self.media.bridge(call.a_media, transfer.media)
        self._notify(transfer, "SIP/2.0 200 OK", final=True)
        if transfer.transferor.state != DialogState.TERMINATED:
            self._bye(transfer.transferor)
        self.media.release(old_media)
        self._by_b_call_id.pop(old_call_id, None)
        call.b_media, call.b_sdp, call.b_dialog = transfer.media, transfer.sdp, dialog
        call.b_call_id, call.b_tag, call.b_invite = transfer.call_id, transfer.tag, fork.invite
        call.transfer = None
        log.info("call %s: transferred to %s", call.call_id, transfer.number)

    def _arm_session_timer(self, call: Call, now: float) -> None:
        """RFC 4028: we refresh at half the interval, or expect the caller to and BYE if it does not."""
        timer = call.session_timer
        assert timer is not None
        if timer.we_refresh(uas=True):
            self._at(now + timer.refresh_after, partial(self._refresh_session, call))
        else:
            expire = now + timer.expire_after
            call.session_deadline = expire
            self._at(expire, partial(self._session_expired, call, expire))

    def _refresh_session(self, call: Call) -> None:
        if call.state != CallState.ANSWERED or call.a_dialog is None or call.session_timer is None:
            return
        dialog = call.a_dialog
        t, host, port = self._via(dialog.peer.transport)
        update = dialog.new_request(
            "UPDATE", extra_headers=call.session_timer.response_headers()[:1],
            branch=self.ids.branch(), via_host=host, via_port=port, transport=t,
        )  # fmt: skip
        self._send_request(update, dialog.peer)
        now, _ = self.clock()
        self._at(now + call.session_timer.refresh_after, partial(self._refresh_session, call))

    def _session_expired(self, call: Call, deadline: float) -> None:
        if call.state == CallState.ANSWERED and call.session_deadline == deadline:
            log.info("call %s: session not refreshed; hanging up", call.call_id)
            self._hangup(call, "system", send_a=True, send_b=True)

    def _media_event(self, call: Call, event: MediaEvent) -> None:
        if isinstance(event, WorkerDied) and call.state in (CallState.ROUTING, CallState.RINGING):
            log.warning("call %s: its media worker died before the answer; ending it", call.call_id)
            if call.a_txn is None:
                self._origin_failed(call, 503)
            else:
                self._fail(call, 503, "Service Unavailable (media lost)")
            self.flush()
            return
        if isinstance(event, RtpTimeout) and call.state == CallState.ANSWERED:
            log.info("call %s: no RTP for %.0f s; hanging up", call.call_id, event.silent_for)
            self._hangup(call, "system", send_a=True, send_b=True)
            self.flush()

    # ---- ending -------------------------------------------------------------------------
    def _hangup(self, call: Call, side: str, *, send_a: bool, send_b: bool) -> None:
        if call.state == CallState.ENDED:
            return
        call.hangup_side = side
        if send_a and call.a_dialog is not None:
            self._bye(call.a_dialog)
        if send_b and call.b_dialog is not None:
            self._bye(call.b_dialog)
        call.disposition = "answered" if call.answer is not None else call.disposition
        self._finish(call)

    def _bye(self, dialog: Dialog) -> None:
        t, host, port = self._via(dialog.peer.transport)
        bye = dialog.new_request("BYE", branch=self.ids.branch(), via_host=host, via_port=port, transport=t)
        self._send_request(bye, dialog.peer)

    def _ack_b(self, call: Call, cseq: int) -> None:
        assert call.b_dialog is not None
        self._send_ack(call.b_dialog, cseq)

    def _send_ack(self, dialog: Dialog, cseq: int) -> None:
        t, host, port = self._via(dialog.peer.transport)
        ack = dialog.ack_for_2xx(cseq, branch=self.ids.branch(), via_host=host, via_port=port, transport=t)
        self.pending.append(self.stack.send_stateless(ack, dialog.peer))

    def _start_recording(self, call: Call, wall: float) -> None:
        rec = self.config.recording
        if not rec.enabled or self.media.recorder is None:
            return
        rel = rec.path.format(
            date=time.strftime("%Y-%m-%d", time.localtime(wall)), call_id=_safe(call.call_id), ext=rec.format,
            caller=_safe(call.caller), callee=_safe(call.callee),
        )  # fmt: skip
        path = Path(rel) if Path(rel).is_absolute() else self.config.data_dir / rel
        try:
            call.recording = call.a_media.record(path, fmt=rec.format)
            call.recording_path = str(path)
        except Exception:
            log.exception("call %s: cannot record", call.call_id)

    def _release_media(self, call: Call) -> None:
        self.media.release(call.a_media)
        if call.b_media is not None:
            self.media.release(call.b_media)
        if call.transfer is not None:
            self.media.release(call.transfer.media)
            for fork in call.transfer.forks:
                if not fork.done:
                    self._cancel_fork(fork)
            self._by_b_call_id.pop(call.transfer.call_id, None)

    def _finish(self, call: Call) -> None:
        if call.state == CallState.ENDED:
            return
        call.state = CallState.ENDED
        _, wall = self.clock()
        call.end = wall
        if call.connect_waiter is not None and not call.connect_waiter.done():
            call.connect_waiter.set_result(RingOutcome(None, 487))
        task = call.app_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        self._withdraw_forks(call, [f for f in call.forks if not f.done])  # e.g. an app's ring
        recording = call.recording
        if recording is not None:
            call.a_media.stop_recording()
        self._release_media(call)
        self.calls.pop(call.call_id, None)
        self._by_b_call_id.pop(call.b_call_id, None)
        for fork in call.forks:
            self._by_txn.pop(id(fork.txn), None)
        record = CallRecord(
            call_id=call.call_id, caller=call.caller, callee=call.callee, route_target=call.route_target,
            start=call.start, answer=call.answer, end=wall, disposition=Disposition(call.disposition),
            sip_code=call.sip_code, hangup_side=HangupSide(call.hangup_side) if call.hangup_side else None,
            recording_path=call.recording_path,
        )  # fmt: skip
        if self.cdr is not None:
            try:
                self.cdr.write(record)
            except Exception:
                log.exception("call %s: CDR not written", call.call_id)
        if recording is not None and call.recording_path:
            sidecar = {
                "call_id": call.call_id, "caller": call.caller, "callee": call.callee, "start": call.start,
                "answer": call.answer, "end": wall, "pauses": [list(p) for p in recording.pauses],
                "recording": call.recording_path,
            }  # fmt: skip
            target = Path(call.recording_path).with_suffix(".json")
            if self.executor is not None:
                self.executor.submit(_write_json, target, sidecar)
            else:
                _write_json(target, sidecar)
        log.info("call %s ended: %s (%s)", call.call_id, call.disposition, call.hangup_side)
        self._tell(call, "ended")

    def _tell(self, call: Call, what: str) -> None:
        for listener in call.listeners:
            try:
                listener(what, call)
            except Exception:
                log.exception("call %s: %s listener failed", call.call_id, what)


def _better_failure(current: int, new: int) -> int:
    """Which fork failure the caller hears (RFC 3261 §16.7 step 6, simplified): 6xx, then 486, then lowest."""
    if current == 0:
        return new
    for status in (current, new):
        if status >= 600:
            return status
    if 486 in (current, new):
        return 486
    return min(current, new)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in text)[:120]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


class CallSession:
    """The one API applications (IVR, ACD, voicemail) use on a call they answer themselves.

    Media operations run on the caller's leg in the media engine. When the
    caller hangs up, the application's task is cancelled (``CancelledError`` at
    its current ``await``). If the application returns without connecting the
    caller anywhere, the call is hung up.
    """

    def __init__(self, b2bua: B2BUA, call: Call, name: str) -> None:
        self._b2bua = b2bua
        self._call = call
        self.name = name  # the menu/queue/box from the route, e.g. "hotline" for ivr:hotline
        self.language = b2bua.config.language
        # what applications learn about the caller, shared between them (e.g. "account", "tier" after login)
        self.data: dict[str, Any] = {}

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def caller(self) -> str:
        return self._call.caller

    @property
    def callee(self) -> str:
        return self._call.callee

    @property
    def answered(self) -> bool:
        return self._call.answer is not None

    @property
    def ended(self) -> bool:
        return self._call.state == CallState.ENDED

    def answer(self) -> None:
        """Answer the caller (200 OK with our SDP); media operations work after this."""
        call = self._call
        if call.answer is None and call.state != CallState.ENDED:
            self._b2bua.answer_caller(call)
            self._b2bua.flush()

    async def play(self, prompts: Sequence[str | Any], *, barge_in: bool = True) -> bool:
        """Play prompt names (in the call's language) or PCM; False when a digit interrupted it."""
        self.answer()
        leg = self._call.a_media
        leg.language = self.language
        return await leg.play(prompts, barge_in=barge_in)

    async def collect(
        self,
        max_digits: int,
        *,
        terminator: str = "#",
        first_timeout: float = 5.0,
        inter_digit_timeout: float = 3.0,
    ) -> str:
        """Digits keyed by the caller (RFC 4733, in-band or SIP INFO); "" when nothing came."""
        self.answer()
        return await self._call.a_media.collect_digits(
            max_digits,
            terminator=terminator,
            first_timeout=first_timeout,
            inter_digit_timeout=inter_digit_timeout,
        )

    async def say_number(self, value: int | str, *, barge_in: bool = True) -> bool:
        """Read a number out in the call's language."""
        from .media.say import say_number

        return await self.play(say_number(value, self.language), barge_in=barge_in)

    def record(self, path: str | Path) -> Recording:
        """Start the application's own recording (e.g. a voicemail message); the call recording goes on."""
        self.answer()
        return self._call.a_media.record(Path(path), app=True)

    def stop_recording(self) -> None:
        """Close the application's recording."""
        self._call.a_media.stop_recording(app=True)

    def pause_recording(self) -> None:
        """Pause the call recording (silence in its place), e.g. while a PIN is keyed."""
        self._call.a_media.pause_recording()

    def resume_recording(self) -> None:
        self._call.a_media.resume_recording()

    async def connect(self, number: str) -> bool:
        """Ring ``number`` by the dial plan and bridge the caller to it on answer (a transfer).

        True once bridged (the application's part is then over); False when the target is
        busy, unreachable or does not answer within ``ring_timeout_s`` (the caller stays).
        """
        self.answer()
        return (await self._b2bua.ring(self._call, [number])).answered_by is not None

    def ring(
        self, numbers: Sequence[str], *, timeout: float | None = None, direct: bool = False
    ) -> asyncio.Future[RingOutcome]:
        """Ring several numbers at once (an ACD offering the call to agents); see :meth:`B2BUA.ring`.

        Not a coroutine: the application keeps playing to the caller while it rings.
        """
        self.answer()
        return self._b2bua.ring(self._call, numbers, timeout=timeout, direct=direct)

    def withdraw(self, number: str | None = None) -> None:
        """Stop ringing ``number`` (all when None)."""
        self._b2bua.withdraw(self._call, number)

    def listen(self, listener: Callable[[str, Call], None]) -> None:
        """Be told ``"ended"`` when the call ends and ``"transferred"`` when the callee REFERs it."""
        self._call.listeners.append(listener)

    @property
    def digits_received(self) -> int:
        """How many digits the caller keyed so far (the digits themselves are never kept: PINs)."""
        return self._call.a_media.digits_received

    @property
    def hangup_side(self) -> str | None:
        """Who ended the call: "caller", "callee" or "system" (None while it goes on)."""
        return self._call.hangup_side

    def hangup(self, status: int = 480) -> None:
        """End the call: BYE when answered, else a final ``status`` to the caller."""
        call = self._call
        b2bua = self._b2bua
        if call.state == CallState.ENDED:
            return
        if call.answer is None:
            b2bua._fail(call, status)
        else:
            b2bua._hangup(call, "system", send_a=True, send_b=True)
        b2bua.flush()
