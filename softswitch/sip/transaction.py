"""The SIP transaction layer (RFC 3261 §17), sans-I/O.

Four state machines, one per RFC figure: :class:`InviteClientTransaction`
(Figure 5), :class:`NonInviteClientTransaction` (Figure 6),
:class:`InviteServerTransaction` (Figure 7) and
:class:`NonInviteServerTransaction` (Figure 8). The INVITE machines follow
RFC 6026, which corrects RFC 3261's handling of 2xx responses: a 2xx no longer
destroys the transaction at once but moves it to ``Accepted`` (Timer L on the
server, Timer M on the client), so retransmitted INVITEs are absorbed instead
of being taken for new requests, and every 2xx (retransmissions and forked
ones) still reaches the client TU so it can ACK each. RFC 6026 is the modern,
correct behaviour; plain RFC 3261 2xx handling is deliberately not offered.

Each machine is a table ``(state, input) -> handler``. An input with no entry
raises :class:`ProtocolError`; where the RFC says to ignore or absorb an input
(or where UDP reordering makes it a normal event, e.g. a late 1xx after the
final response) the table has an explicit no-op entry (``_absorb``).

Timers are data (:class:`Timer`, :class:`TimerConfig`): a transaction keeps
its armed timers as deadlines, :meth:`Transaction.next_timer` says when it next
needs the clock and :meth:`Transaction.handle_timer` fires what is due.
:class:`TransactionLayer` holds every transaction, matches incoming messages
to them (§17.1.3, §17.2.3 with the RFC 2543 fallback) and multiplexes their
timers on one heap. Nothing here reads the clock or touches a socket: ``now``
is passed in, and the output is a list of events (:class:`SendMessage` for
the transport, the rest for the TU).
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from .errors import SipError
from .message import Headers, Message, Request, Response, make_response
from .peer import Peer

MAGIC_COOKIE = "z9hG4bK"


class ProtocolError(SipError):
    """An input for which the transaction's state machine defines no transition.

    Raised both for TU mistakes (e.g. a second final response on an INVITE
    server transaction) and for network input the RFC does not allow (e.g. an
    ACK before any final response, a 2xx after a non-2xx final); the stack
    drops the latter like any other unusable message. Status 500 if answered.
    """

    def __init__(self, transaction: Transaction, event: object) -> None:
        name, state = type(transaction).__name__, transaction.state.value
        super().__init__(500, f"{name} in state {state}: no transition for {event}")
        self.transaction = transaction
        self.event = event


class State(enum.Enum):
    """Transaction states, named as in the RFC 3261 §17 figures and RFC 6026.

    Client INVITE: Calling, Proceeding, Completed, Accepted, Terminated.
    Client non-INVITE: Trying, Proceeding, Completed, Terminated.
    Server INVITE: Proceeding, Completed, Confirmed, Accepted, Terminated.
    Server non-INVITE: Trying, Proceeding, Completed, Terminated.
    """

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Timer(enum.Enum):
    """The §17 timers (Table 4) plus RFC 6026's L and M.

    A: INVITE request retransmit (UDP), T1 doubling.  B: INVITE timeout, 64*T1.
    C: proxy INVITE timeout (optional, > 3 min), reset by each 1xx.
    D: wait for final response retransmits, 32 s UDP / 0 reliable.
    E: non-INVITE request retransmit (UDP), T1 doubling capped at T2 (T2 once Proceeding).
    F: non-INVITE timeout, 64*T1.  G: INVITE final response retransmit (UDP), T1 doubling capped at T2.
    H: wait for ACK, 64*T1.  I: absorb ACK retransmits, T4 UDP / 0 reliable.
    J: absorb non-INVITE request retransmits, 64*T1 UDP / 0 reliable.
    K: absorb response retransmits, T4 UDP / 0 reliable.
    L: INVITE server Accepted, 64*T1.  M: INVITE client Accepted, 64*T1.
    """

    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    K = "K"
    L = "L"
    M = "M"


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Timer base values in seconds (RFC 3261 Table 4); ``d`` is Timer D on UDP."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0


class Input(enum.Enum):
    """Non-timer inputs of the state machines."""

    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST = "request retransmission"
    ACK = "ACK"
    SEND_PROVISIONAL = "1xx from TU"
    SEND_SUCCESS = "2xx from TU"
    SEND_FAILURE = "300-699 from TU"


# ---------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Hand ``message`` to the transport, addressed to ``peer``."""

    message: Message
    peer: Peer


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request; the TU must answer it through ``transaction``."""

    request: Request
    transaction: ServerTransaction


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx (it matches no transaction, or an Accepted INVITE server one)."""

    request: Request


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response the TU must see (never a retransmitted non-2xx final)."""

    response: Response
    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matches no client transaction (RFC 6026 §7.3: usually dropped)."""

    response: Response


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """``timer`` fired: B/F mean "act as if 408 arrived"; H means the ACK never came.

    C (proxies only) means: CANCEL the branch if a 1xx came, else act as if 408.
    """

    transaction: Transaction
    timer: Timer


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction reached Terminated and was dropped from the layer."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class Retransmit:
    """Resend the bytes of a retired transaction's final response (see :meth:`TransactionLayer.retire`)."""

    data: bytes
    peer: Peer


Event: TypeAlias = (
    SendMessage
    | Retransmit
    | RequestReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimeout
    | TransactionTerminated
)

TransactionKey: TypeAlias = tuple[str | int | None, ...]
_Handler: TypeAlias = Callable[[Any, Any, float], list[Event]]

# ------------------------------------------------------------------------------------------ machines


class Transaction:
    """What all four machines share: identity, state, timers and the dispatch table."""

    __slots__ = ("_heap_at", "_interval", "_timers", "config", "key", "last_response", "peer", "request",
                 "state")  # fmt: skip

    _TABLE: ClassVar[dict[tuple[State, Input | Timer], _Handler]] = {}

    def __init__(
        self, key: TransactionKey, request: Request, peer: Peer, config: TimerConfig, state: State
    ) -> None:
        self.key = key
        self.request = request
        self.peer = peer
        self.config = config
        self.state = state
        self.last_response: Response | None = None
        self._timers: dict[Timer, float] = {}
        self._interval = config.t1  # current retransmission interval (A, E or G)
        self._heap_at: float | None = None  # TransactionLayer bookkeeping: deadline of the live heap entry

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.state.value} {self.key!r}>"

    @property
    def timers(self) -> dict[Timer, float]:
        """Armed timers and their deadlines (a copy)."""
        return dict(self._timers)

    def next_timer(self) -> float | None:
        """The earliest armed deadline, or None."""
        timers = self._timers
        return min(timers.values()) if timers else None

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``, earliest first."""
        events: list[Event] = []
        timers = self._timers
        while timers and self.state is not State.TERMINATED:
            timer = min(timers, key=timers.__getitem__)
            if timers[timer] > now:
                break
            del timers[timer]
            events += self._dispatch(timer, None, now)
        return events

    def _dispatch(self, event: Input | Timer, message: Message | None, now: float) -> list[Event]:
        handler = self._TABLE.get((self.state, event))
        if handler is None:
            raise ProtocolError(self, event.value if isinstance(event, Input) else f"Timer {event.value}")
        return handler(self, message, now)

    def _absorb(self, message: object, now: float) -> list[Event]:
        return []

    def _terminate(self) -> list[Event]:
        self.state = State.TERMINATED
        self._timers.clear()
        return [TransactionTerminated(self)]

    def _linger(self, timer: Timer, delay: float, now: float, events: list[Event]) -> list[Event]:
        """Arm ``timer``, or terminate at once when it is zero (reliable transports)."""
        if delay <= 0.0:
            events += self._terminate()
        else:
            self._timers[timer] = now + delay
        return events


def _classify(status: int) -> Input:
    if status < 200:
        return Input.PROVISIONAL
    return Input.SUCCESS if status < 300 else Input.FAILURE


class ClientTransaction(Transaction):
    """Base of the client machines: the TU sent ``request``; responses come back."""

    __slots__ = ()

    def start(self, now: float) -> list[Event]:
        """Send the request and arm the initial timers (called once, by the layer)."""
        raise NotImplementedError

    def receive_response(self, response: Response, now: float) -> list[Event]:
        """Feed a response matched to this transaction."""
        return self._dispatch(_classify(response.status), response, now)

    def _send_request(self) -> SendMessage:
        return SendMessage(self.request, self.peer)

    def _deliver(self, response: Response) -> ResponseReceived:
        self.last_response = response
        return ResponseReceived(response, self)


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 Figure 5 with RFC 6026's Accepted state (Timer M).

    ``timer_c`` (seconds, None = off) enables the proxy-only Timer C of §16.6
    step 11 / §16.8: armed on creation, reset by every provisional response,
    stopped by a final one; when it fires the TU gets
    ``TransactionTimeout(txn, Timer.C)`` and the transaction carries on. A UA
    (and a B2BUA) leaves it off and runs its own no-answer timer.
    """

    __slots__ = ("ack", "timer_c")

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Peer,
        config: TimerConfig,
        *,
        timer_c: float | None = None,
    ) -> None:
        super().__init__(key, request, peer, config, State.CALLING)
        self.timer_c = timer_c
        self.ack: Request | None = None  # the ACK this transaction sent for a non-2xx final

    def start(self, now: float) -> list[Event]:
        cfg = self.config
        if not self.peer.reliable:
            self._timers[Timer.A] = now + cfg.t1
        self._timers[Timer.B] = now + 64 * cfg.t1
        if self.timer_c is not None:
            self._timers[Timer.C] = now + self.timer_c
        return [self._send_request()]

    def build_ack(self, response: Response) -> Request:
        """The ACK for a non-2xx final response (§17.1.1.3)."""
        req = self.request
        rh = req.headers
        to = response.headers.get("To")
        from_, call_id = rh.get("From"), rh.get("Call-ID")
        if to is None or from_ is None or call_id is None:
            raise ProtocolError(self, "final response without To/From/Call-ID")
        items = [("Via", rh.get_list("Via")[0]), ("Max-Forwards", "70")]
        items += [("Route", route) for route in rh.get_all("Route")]
        items += [("From", from_), ("To", to), ("Call-ID", call_id), ("CSeq", f"{req.cseq.seq} ACK")]
        return Request("ACK", req.uri, Headers(items))

    # handlers
    def _retransmit(self, _: None, now: float) -> list[Event]:
        self._interval *= 2
        self._timers[Timer.A] = now + self._interval
        return [self._send_request()]

    def _timeout(self, _: None, now: float) -> list[Event]:
        return [TransactionTimeout(self, Timer.B), *self._terminate()]

    def _timer_c(self, _: None, now: float) -> list[Event]:
        return [TransactionTimeout(self, Timer.C)]

    def _provisional(self, response: Response, now: float) -> list[Event]:
        self.state = State.PROCEEDING
        timers = self._timers
        timers.pop(Timer.A, None)
        timers.pop(Timer.B, None)
        if self.timer_c is not None:
            timers[Timer.C] = now + self.timer_c
        return [self._deliver(response)]

    def _success(self, response: Response, now: float) -> list[Event]:
        self.state = State.ACCEPTED
        timers = self._timers
        timers.clear()
        timers[Timer.M] = now + 64 * self.config.t1
        return [self._deliver(response)]

    def _failure(self, response: Response, now: float) -> list[Event]:
        ack = self.build_ack(response)
        self.ack = ack
        self.state = State.COMPLETED
        self._timers.clear()
        events: list[Event] = [self._deliver(response), SendMessage(ack, self.peer)]
        return self._linger(Timer.D, 0.0 if self.peer.reliable else self.config.d, now, events)

    def _resend_ack(self, response: Response, now: float) -> list[Event]:
        assert self.ack is not None
        return [SendMessage(self.ack, self.peer)]

    def _accepted_2xx(self, response: Response, now: float) -> list[Event]:
        return [self._deliver(response)]  # retransmitted or forked 2xx: the TU ACKs each

    def _end(self, _: None, now: float) -> list[Event]:
        return self._terminate()


_S, _I, _T = State, Input, Timer
_ict = InviteClientTransaction
InviteClientTransaction._TABLE = {
    (_S.CALLING, _T.A): _ict._retransmit,
    (_S.CALLING, _T.B): _ict._timeout,
    (_S.CALLING, _T.C): _ict._timer_c,
    (_S.PROCEEDING, _T.C): _ict._timer_c,
    (_S.CALLING, _I.PROVISIONAL): _ict._provisional,
    (_S.PROCEEDING, _I.PROVISIONAL): _ict._provisional,
    (_S.CALLING, _I.SUCCESS): _ict._success,
    (_S.PROCEEDING, _I.SUCCESS): _ict._success,
    (_S.CALLING, _I.FAILURE): _ict._failure,
    (_S.PROCEEDING, _I.FAILURE): _ict._failure,
    (_S.COMPLETED, _I.FAILURE): _ict._resend_ack,  # final retransmitted: ACK again, TU not told
    (_S.COMPLETED, _I.PROVISIONAL): _ict._absorb,  # late (reordered) 1xx
    (_S.COMPLETED, _T.D): _ict._end,
    (_S.ACCEPTED, _I.SUCCESS): _ict._accepted_2xx,
    (_S.ACCEPTED, _I.PROVISIONAL): _ict._absorb,  # late (reordered) 1xx
    (_S.ACCEPTED, _T.M): _ict._end,
}


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 Figure 6 (with Timer E reset to T2 in Proceeding)."""

    __slots__ = ()

    def __init__(self, key: TransactionKey, request: Request, peer: Peer, config: TimerConfig) -> None:
        super().__init__(key, request, peer, config, State.TRYING)

    def start(self, now: float) -> list[Event]:
        cfg = self.config
        if not self.peer.reliable:
            self._timers[Timer.E] = now + cfg.t1
        self._timers[Timer.F] = now + 64 * cfg.t1
        return [self._send_request()]

    def _retransmit_trying(self, _: None, now: float) -> list[Event]:
        self._interval = min(2 * self._interval, self.config.t2)
        self._timers[Timer.E] = now + self._interval
        return [self._send_request()]

    def _retransmit_proceeding(self, _: None, now: float) -> list[Event]:
        self._interval = self.config.t2
        self._timers[Timer.E] = now + self._interval
        return [self._send_request()]

    def _timeout(self, _: None, now: float) -> list[Event]:
        return [TransactionTimeout(self, Timer.F), *self._terminate()]

    def _provisional(self, response: Response, now: float) -> list[Event]:
        self.state = State.PROCEEDING
        return [self._deliver(response)]

    def _final(self, response: Response, now: float) -> list[Event]:
        self.state = State.COMPLETED
        self._timers.clear()
        events: list[Event] = [self._deliver(response)]
        return self._linger(Timer.K, 0.0 if self.peer.reliable else self.config.t4, now, events)

    def _end(self, _: None, now: float) -> list[Event]:
        return self._terminate()


_nict = NonInviteClientTransaction
NonInviteClientTransaction._TABLE = {
    (_S.TRYING, _T.E): _nict._retransmit_trying,
    (_S.PROCEEDING, _T.E): _nict._retransmit_proceeding,
    (_S.TRYING, _T.F): _nict._timeout,
    (_S.PROCEEDING, _T.F): _nict._timeout,
    (_S.TRYING, _I.PROVISIONAL): _nict._provisional,
    (_S.PROCEEDING, _I.PROVISIONAL): _nict._provisional,
    (_S.TRYING, _I.SUCCESS): _nict._final,
    (_S.TRYING, _I.FAILURE): _nict._final,
    (_S.PROCEEDING, _I.SUCCESS): _nict._final,
    (_S.PROCEEDING, _I.FAILURE): _nict._final,
    # Completed buffers response retransmissions (§17.1.2.2); late 1xx likewise
    (_S.COMPLETED, _I.PROVISIONAL): _nict._absorb,
    (_S.COMPLETED, _I.SUCCESS): _nict._absorb,
    (_S.COMPLETED, _I.FAILURE): _nict._absorb,
    (_S.COMPLETED, _T.K): _nict._end,
}


class ServerTransaction(Transaction):
    """Base of the server machines: ``request`` came from ``peer``; the TU answers."""

    __slots__ = ()

    def receive_request(self, request: Request, now: float) -> list[Event]:
        """Feed a request matched to this transaction (a retransmission, or the ACK)."""
        return self._dispatch(Input.ACK if request.method == "ACK" else Input.REQUEST, request, now)

    def send_response(self, response: Response, now: float) -> list[Event]:
        """Send a response from the TU."""
        status = response.status
        if not 100 <= status <= 699:
            raise ValueError(f"bad status code {status}")
        if status < 200:
            event = Input.SEND_PROVISIONAL
        else:
            event = Input.SEND_SUCCESS if status < 300 else Input.SEND_FAILURE
        return self._dispatch(event, response, now)

    def _send(self, response: Response) -> SendMessage:
        self.last_response = response
        return SendMessage(response, self.peer)

    def _resend_last(self, request: Request, now: float) -> list[Event]:
        last = self.last_response
        return [] if last is None else [SendMessage(last, self.peer)]

    def _end(self, _: None, now: float) -> list[Event]:
        return self._terminate()


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 Figure 7 with RFC 6026's Accepted state (Timer L).

    The TU alone retransmits its 2xx (§13.3.1.4), passing each copy through
    :meth:`send_response`; in Accepted, INVITE retransmissions are absorbed
    and a matching ACK (possible only with RFC 2543 matching) goes to the TU.
    """

    __slots__ = ("ack_key",)

    def __init__(self, key: TransactionKey, request: Request, peer: Peer, config: TimerConfig) -> None:
        super().__init__(key, request, peer, config, State.PROCEEDING)
        # RFC 2543 matching: the key an ACK for our final response will carry (set by the layer)
        self.ack_key: TransactionKey | None = None

    def _provisional(self, response: Response, now: float) -> list[Event]:
        return [self._send(response)]

    def _success(self, response: Response, now: float) -> list[Event]:
        self.state = State.ACCEPTED
        self._timers[Timer.L] = now + 64 * self.config.t1
        return [self._send(response)]

    def _failure(self, response: Response, now: float) -> list[Event]:
        self.state = State.COMPLETED
        cfg = self.config
        if not self.peer.reliable:
            self._timers[Timer.G] = now + cfg.t1
        self._timers[Timer.H] = now + 64 * cfg.t1
        return [self._send(response)]

    def _retransmit(self, _: None, now: float) -> list[Event]:
        self._interval = min(2 * self._interval, self.config.t2)
        self._timers[Timer.G] = now + self._interval
        assert self.last_response is not None
        return [SendMessage(self.last_response, self.peer)]

    def _timeout(self, _: None, now: float) -> list[Event]:
        return [TransactionTimeout(self, Timer.H), *self._terminate()]

    def _ack(self, request: Request, now: float) -> list[Event]:
        self.state = State.CONFIRMED
        self._timers.clear()
        return self._linger(Timer.I, 0.0 if self.peer.reliable else self.config.t4, now, [])

    def _accepted_2xx(self, response: Response, now: float) -> list[Event]:
        return [self._send(response)]

    def _accepted_ack(self, request: Request, now: float) -> list[Event]:
        return [AckReceived(request)]


_ist = InviteServerTransaction
InviteServerTransaction._TABLE = {
    (_S.PROCEEDING, _I.REQUEST): _ist._resend_last,
    (_S.PROCEEDING, _I.SEND_PROVISIONAL): _ist._provisional,
    (_S.PROCEEDING, _I.SEND_SUCCESS): _ist._success,
    (_S.PROCEEDING, _I.SEND_FAILURE): _ist._failure,
    (_S.COMPLETED, _I.REQUEST): _ist._resend_last,
    (_S.COMPLETED, _T.G): _ist._retransmit,
    (_S.COMPLETED, _T.H): _ist._timeout,
    (_S.COMPLETED, _I.ACK): _ist._ack,
    (_S.CONFIRMED, _I.ACK): _ist._absorb,  # the point of Confirmed: soak up ACK retransmissions
    (_S.CONFIRMED, _I.REQUEST): _ist._absorb,  # INVITE reordered behind the ACK
    (_S.CONFIRMED, _T.I): _ist._end,
    (_S.ACCEPTED, _I.REQUEST): _ist._absorb,  # RFC 6026: the TU's 2xx retransmissions cover it
    (_S.ACCEPTED, _I.ACK): _ist._accepted_ack,
    (_S.ACCEPTED, _I.SEND_SUCCESS): _ist._accepted_2xx,
    (_S.ACCEPTED, _T.L): _ist._end,
}


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 Figure 8."""

    __slots__ = ()

    def __init__(self, key: TransactionKey, request: Request, peer: Peer, config: TimerConfig) -> None:
        super().__init__(key, request, peer, config, State.TRYING)

    def _provisional(self, response: Response, now: float) -> list[Event]:
        self.state = State.PROCEEDING
        return [self._send(response)]

    def _final(self, response: Response, now: float) -> list[Event]:
        self.state = State.COMPLETED
        self.last_response = response
        events: list[Event] = [SendMessage(response, self.peer)]
        if self.peer.reliable:
            return events + self._terminate()
        self._timers[Timer.J] = now + 64 * self.config.t1
        return events


_nist = NonInviteServerTransaction
NonInviteServerTransaction._TABLE = {
    (_S.TRYING, _I.REQUEST): _nist._absorb,  # §17.2.2: discarded until the TU answers
    (_S.TRYING, _I.SEND_PROVISIONAL): _nist._provisional,
    (_S.TRYING, _I.SEND_SUCCESS): _nist._final,
    (_S.TRYING, _I.SEND_FAILURE): _nist._final,
    (_S.PROCEEDING, _I.REQUEST): _nist._resend_last,
    (_S.PROCEEDING, _I.SEND_PROVISIONAL): _nist._provisional,
    (_S.PROCEEDING, _I.SEND_SUCCESS): _nist._final,
    (_S.PROCEEDING, _I.SEND_FAILURE): _nist._final,
    (_S.COMPLETED, _I.REQUEST): _nist._resend_last,
    # §17.2.2: "any other final responses passed by the TU ... MUST be discarded"
    (_S.COMPLETED, _I.SEND_SUCCESS): _nist._absorb,
    (_S.COMPLETED, _I.SEND_FAILURE): _nist._absorb,
    (_S.COMPLETED, _T.J): _nist._end,
}

# ------------------------------------------------------------------------------------------ matching


def _via_identity(message: Message) -> tuple[str | int | None, ...]:
    """The top Via for RFC 2543 matching, minus what our transport may have added."""
    via = message.top_via
    params = sorted(f"{k}={v}" for k, v in via.params.items() if k not in ("received", "rport"))
    return (via.transport.upper(), via.host.lower(), via.port, *params)


def _legacy_key(request: Request, to_tag: str | None, method: str) -> TransactionKey:
    """RFC 2543 fallback key (§17.2.3): Request-URI, To tag, From tag, Call-ID, CSeq, top Via."""
    via = _via_identity(request)
    return ("2543", method, request.uri, to_tag, request.from_.tag, request.call_id, request.cseq.seq, *via)


def server_key(request: Request) -> TransactionKey:
    """The §17.2.3 key of the server transaction ``request`` belongs to (ACK maps to INVITE)."""
    via = request.top_via
    branch = via.branch
    method = request.method
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), via.port, "INVITE" if method == "ACK" else method)
    # a legacy ACK keeps "ACK": it matches the alias its INVITE transaction registered on sending a final
    return _legacy_key(request, request.to.tag, method)


ServerTransactionT: TypeAlias = InviteServerTransaction | NonInviteServerTransaction
ClientTransactionT: TypeAlias = InviteClientTransaction | NonInviteClientTransaction

# --------------------------------------------------------------------------------------------- layer


class TransactionLayer:
    """All transactions of one stack: matching, creation, timers, removal.

    Every method returns events in the order they must be acted on. A
    transaction that reaches Terminated is dropped and reported with
    :class:`TransactionTerminated`. Network input the state machines do not
    allow raises :class:`ProtocolError` (drop the message); malformed headers
    needed for matching raise ``BadRequest``.
    """

    __slots__ = (
        "_acks", "_client", "_heap", "_retired", "_retired_order", "_seq", "_server", "config", "send_trying",
    )  # fmt: skip

    def __init__(self, config: TimerConfig | None = None, *, send_trying: bool = True) -> None:
        self.config = config if config is not None else TimerConfig()
        self.send_trying = send_trying  # INVITE server transactions send 100 Trying at once
        self._server: dict[TransactionKey, ServerTransactionT] = {}
        self._acks: dict[TransactionKey, InviteServerTransaction] = {}  # RFC 2543 ACK matching
        self._client: dict[TransactionKey, ClientTransactionT] = {}
        self._heap: list[tuple[float, int, Transaction]] = []
        self._seq = itertools.count()
        # retired Completed non-INVITE server transactions: key -> (bytes, transport, host, port, connection).
        # Only atomic values, so the GC does not track them; Timer J is constant, so expiry is FIFO.
        self._retired: dict[TransactionKey, tuple[bytes, str, str, int, int]] = {}
        self._retired_order: deque[tuple[float, TransactionKey]] = deque()

    def __len__(self) -> int:
        """Live transactions (server, client and retired)."""
        return len(self._client) + len(self._server) + len(self._retired)

    # -- server side

    def receive_request(self, request: Request, peer: Peer, now: float) -> list[Event]:
        """A request from the transport: absorb it, pass it up, or start a server transaction."""
        key = server_key(request)
        txn = self._server.get(key)
        if txn is None and request.method == "ACK" and self._acks:
            txn = self._acks.get(key)
        if txn is not None:
            events = txn.receive_request(request, now)
            self._settle(txn)
            return events
        retired = self._retired.get(key)
        if retired is not None:  # a retransmission: Completed state resends the final response
            data, transport, host, port, connection = retired
            return [Retransmit(data, Peer(transport, host, port, connection))]
        method = request.method
        if method == "ACK":
            return [AckReceived(request)]
        if method == "INVITE":
            ist = InviteServerTransaction(key, request, peer, self.config)
            self._server[key] = ist
            if not self.send_trying:
                return [RequestReceived(request, ist)]
            events = ist.send_response(make_response(request, 100), now)
            events.append(RequestReceived(request, ist))
            return events
        nist = NonInviteServerTransaction(key, request, peer, self.config)
        self._server[key] = nist
        return [RequestReceived(request, nist)]

    def send_response(self, txn: ServerTransaction, response: Response, now: float) -> list[Event]:
        """Send the TU's response on ``txn``."""
        events = txn.send_response(response, now)
        if (
            isinstance(txn, InviteServerTransaction)
            and txn.key[0] == "2543"
            and txn.ack_key is None
            and response.status >= 200
        ):
            txn.ack_key = _legacy_key(txn.request, response.to.tag, "ACK")
            if txn.state is not State.TERMINATED:
                self._acks[txn.ack_key] = txn
        self._settle(txn)
        return events

    def retire(self, txn: ServerTransaction, data: bytes, destination: Peer) -> bool:
        """Keep a Completed non-INVITE server transaction as bytes until its Timer J fires.

        In Completed (UDP) such a transaction only resends its final response to
        retransmitted requests, for 64*T1. Holding that duty as a record of atomic
        values instead of the transaction with its parsed request and response keeps
        ~100k lingering transactions (2,000 requests/s for 32 s) out of the GC's way.
        The transaction object itself is dropped without a TransactionTerminated
        event. Returns False (and changes nothing) for any other transaction.
        """
        expiry = txn._timers.get(Timer.J)
        if (
            not isinstance(txn, NonInviteServerTransaction)
            or txn.state is not State.COMPLETED
            or expiry is None
        ):
            return False
        if self._server.get(txn.key) is txn:
            del self._server[txn.key]
        txn.state = State.TERMINATED  # its heap entry is now stale
        txn._timers.clear()
        self._retired[txn.key] = (data, destination.transport, destination.host, destination.port,
                                  destination.connection)  # fmt: skip
        self._retired_order.append((expiry, txn.key))
        return True

    def find_cancel_target(self, cancel: Request) -> InviteServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (§9.2), if still alive."""
        via = cancel.top_via
        branch = via.branch
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            key: TransactionKey = (branch, via.host.lower(), via.port, "INVITE")
        else:
            key = _legacy_key(cancel, cancel.to.tag, "INVITE")
        txn = self._server.get(key)
        return txn if isinstance(txn, InviteServerTransaction) else None

    # -- client side

    def send_request(
        self, request: Request, peer: Peer, now: float, *, timer_c: float | None = None
    ) -> tuple[ClientTransaction, list[Event]]:
        """Start a client transaction for ``request`` (its top Via must carry a z9hG4bK branch).

        ``timer_c`` enables the proxy Timer C on an INVITE (see :class:`InviteClientTransaction`).
        """
        method = request.method
        if method == "ACK":
            raise ValueError("ACK is not sent through a client transaction")
        branch = request.top_via.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise ValueError(f"top Via branch must start with {MAGIC_COOKIE}: {branch!r}")
        key: TransactionKey = (branch, method)
        if key in self._client:
            raise ValueError(f"a client transaction for {key!r} already exists")
        txn: ClientTransactionT
        if method == "INVITE":
            txn = InviteClientTransaction(key, request, peer, self.config, timer_c=timer_c)
        elif timer_c is not None:
            raise ValueError("Timer C applies to INVITE only")
        else:
            txn = NonInviteClientTransaction(key, request, peer, self.config)
        self._client[key] = txn
        events = txn.start(now)
        self._settle(txn)
        return txn, events

    def receive_response(self, response: Response, peer: Peer, now: float) -> list[Event]:
        """A response from the transport: match it (§17.1.3: branch + CSeq method) and feed it."""
        txn = self._client.get((response.top_via.branch, response.cseq.method))
        if txn is None:
            return [StrayResponse(response)]
        events = txn.receive_response(response, now)
        self._settle(txn)
        return events

    # -- timers

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        heap = self._heap
        retired = self._retired_order[0][0] if self._retired_order else None
        while heap:
            at, _, txn = heap[0]
            if txn._heap_at == at and txn.state is not State.TERMINATED:
                return at if retired is None else min(at, retired)
            heapq.heappop(heap)
        return retired

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``."""
        events: list[Event] = []
        order = self._retired_order
        while order and order[0][0] <= now:  # Timer J of retired transactions
            _, key = order.popleft()
            self._retired.pop(key, None)
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, txn = heapq.heappop(heap)
            if txn._heap_at != at or txn.state is State.TERMINATED:
                continue  # stale entry
            txn._heap_at = None
            events += txn.handle_timer(now)
            self._settle(txn)
        return events

    # -- lookup

    def server_transactions(self) -> list[ServerTransaction]:
        """Live server transactions."""
        return list(self._server.values())

    def client_transactions(self) -> list[ClientTransaction]:
        """Live client transactions."""
        return list(self._client.values())

    # -- internals

    def _settle(self, txn: Transaction) -> None:
        """After any input: drop a terminated transaction, or (re)schedule its next timer."""
        if txn.state is State.TERMINATED:
            if isinstance(txn, ServerTransaction):
                server = self._server
                if server.get(txn.key) is txn:
                    del server[txn.key]
                ack_key = txn.ack_key if isinstance(txn, InviteServerTransaction) else None
                if ack_key is not None and self._acks.get(ack_key) is txn:
                    del self._acks[ack_key]
            elif self._client.get(txn.key) is txn:
                del self._client[txn.key]
            return
        timers = txn._timers
        if not timers:
            txn._heap_at = None  # any heap entry is now stale
            return
        at = min(timers.values())
        if at != txn._heap_at:
            txn._heap_at = at
            heapq.heappush(self._heap, (at, next(self._seq), txn))
