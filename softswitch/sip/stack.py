"""The sans-I/O SIP stack: bytes in, bytes out, on top of the transaction layer.

``receive(data, peer, now)`` parses a datagram or stream frame, stamps the top
Via (RFC 3261 §18.2.1, RFC 3581), runs the sanity checks every request needs,
and hands it to the transaction layer. It returns events: :class:`Transmit`
(bytes to send to a peer) and the transaction layer's events for the TU.
Responses are routed per §18.2.2. Input that cannot be parsed is answered
statelessly with ``400`` and a reason phrase when enough of it can be read to
address a response, and dropped otherwise; it never raises.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import BadRequest, SipError
from .headers import Via, parse_vias
from .message import Headers, Message, Request, Response, make_response, parse_message
from .peer import Peer
from .transaction import (
    ClientTransaction,
    Event,
    Retransmit,
    SendMessage,
    ServerTransaction,
    State,
    TimerConfig,
    TransactionLayer,
)

log = logging.getLogger("softswitch.sip")

_RAW_HEADER = re.compile(
    rb"(?im)^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[ \t]*([^\r\n]*(?:\r?\n[ \t]+[^\r\n]*)*)"
)
_CANON = {b"via": "Via", b"v": "Via", b"from": "From", b"f": "From", b"to": "To", b"t": "To",
          b"call-id": "Call-ID", b"i": "Call-ID", b"cseq": "CSeq"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Transmit:
    """Bytes for the transport to send to ``peer``."""

    data: bytes
    peer: Peer


def response_destination(via: Via, peer: Peer) -> Peer:
    """Where a response goes (RFC 3261 §18.2.2 with RFC 3581 rport)."""
    if peer.reliable:
        return peer  # the connection the request came in on
    host = (via.received or via.host).strip("[]")
    rport = via.rport
    if rport:
        return Peer(peer.transport, host, int(rport))
    return Peer(peer.transport, host, via.port or 5060)


class SipStack:
    """Parses, stamps, checks and routes messages; owns the transaction layer."""

    def __init__(
        self,
        *,
        timers: TimerConfig | None = None,
        server_header: str | None = None,
        new_tag: Callable[[], str] | None = None,
    ) -> None:
        self.transactions = TransactionLayer(timers or TimerConfig())
        self.server_header = server_header
        self._new_tag = new_tag or (lambda: "tag")
        self.stats = {"received": 0, "bad": 0, "dropped": 0}

    # ---- inbound -------------------------------------------------------
    def receive(self, data: bytes, peer: Peer, now: float) -> list[Event | Transmit]:
        """Handle one received message; never raises on bad input."""
        self.stats["received"] += 1
        if not data.strip(b"\r\n"):
            return []  # keep-alive
        try:
            msg = parse_message(data)
        except SipError as e:
            return self._reject_raw(data, peer, e)
        try:
            if isinstance(msg, Request):
                return self._receive_request(msg, peer, now)
            return self._receive_response(msg, peer, now)
        except SipError as e:
            if isinstance(msg, Request) and msg.method != "ACK":
                return self._reject_request(msg, peer, e)
            self.stats["dropped"] += 1
            log.debug("dropped message from %s: %s", peer, e)
            return []

    def _receive_request(self, req: Request, peer: Peer, now: float) -> list[Event | Transmit]:
        self._stamp_via(req, peer)
        cseq = req.cseq
        if cseq.method != req.method:
            raise BadRequest("CSeq method does not match request method")
        req.call_id  # noqa: B018 - presence checks: raise BadRequest when missing/malformed
        req.from_  # noqa: B018
        req.to  # noqa: B018
        req.request_uri  # noqa: B018
        return self._route(self.transactions.receive_request(req, peer, now))

    def _receive_response(self, resp: Response, peer: Peer, now: float) -> list[Event | Transmit]:
        resp.cseq  # noqa: B018
        resp.top_via  # noqa: B018
        return self._route(self.transactions.receive_response(resp, peer, now))

    @staticmethod
    def _stamp_via(req: Request, peer: Peer) -> None:
        first_line = req.headers.get("Via")
        if first_line is None:
            raise BadRequest("Missing Via")
        vias = req.vias
        top = vias[0]
        changed = False
        if top.rport == "":
            top.params["rport"] = str(peer.port)
            top.params["received"] = peer.host
            changed = True
        elif top.host.strip("[]") != peer.host:
            top.params["received"] = peer.host
            changed = True
        if changed:
            line_vias = parse_vias(first_line) if "," in first_line else [top]
            line_vias[0] = top
            req.headers.replace_first("Via", ", ".join(str(v) for v in line_vias))
            # keep the parsed cache valid for the new raw text
            req._cache["Via"] = ("\n".join(req.headers.get_all("Via")), vias)

    # ---- outbound ------------------------------------------------------
    def respond(self, txn: ServerTransaction, resp: Response, now: float) -> list[Event | Transmit]:
        """Send ``resp`` through the server transaction ``txn``."""
        if self.server_header and "Server" not in resp.headers:
            resp.headers.add("Server", self.server_header)
        out = self._route(self.transactions.send_response(txn, resp, now))
        if resp.status >= 200 and txn.state is State.COMPLETED and txn.request.method != "INVITE":
            # over UDP it lingers 32 s (Timer J) only to resend this: keep just the bytes
            wire = next((t for t in out if isinstance(t, Transmit)), None)
            if wire is not None:
                self.transactions.retire(txn, wire.data, wire.peer)
        return out

    def request(
        self, req: Request, peer: Peer, now: float
    ) -> tuple[ClientTransaction, list[Event | Transmit]]:
        """Send a request through a new client transaction (its top Via must carry the branch)."""
        if "Max-Forwards" not in req.headers:
            req.headers.add("Max-Forwards", "70")
        if self.server_header and "User-Agent" not in req.headers:
            req.headers.add("User-Agent", self.server_header)
        txn, events = self.transactions.send_request(req, peer, now)
        return txn, self._route(events)

    def send_stateless(self, msg: Message, peer: Peer) -> Transmit:
        """Bytes for a message sent outside any transaction (ACK for a 2xx, 2xx retransmissions)."""
        return self._transmit(msg, peer)

    def handle_timer(self, now: float) -> list[Event | Transmit]:
        return self._route(self.transactions.handle_timer(now))

    def next_timer(self) -> float | None:
        return self.transactions.next_timer()

    def _route(self, events: list[Event]) -> list[Event | Transmit]:
        out: list[Event | Transmit] = []
        for ev in events:
            if isinstance(ev, SendMessage):
                out.append(self._transmit(ev.message, ev.peer))
            elif isinstance(ev, Retransmit):
                out.append(Transmit(ev.data, ev.peer))
            else:
                out.append(ev)
        return out

    def _transmit(self, msg: Message, peer: Peer) -> Transmit:
        if isinstance(msg, Response):
            with contextlib.suppress(SipError):  # an unusable Via: answer the source address
                peer = response_destination(msg.top_via, peer)
        return Transmit(msg.to_bytes(), peer)

    # ---- errors --------------------------------------------------------
    def _reject_request(self, req: Request, peer: Peer, error: SipError) -> list[Event | Transmit]:
        self.stats["bad"] += 1
        log.info(
            "rejecting %s from %s:%s: %s %s", req.method, peer.host, peer.port, error.status, error.reason
        )
        try:
            resp = make_response(req, error.status, error.reason, to_tag=self._new_tag())
        except SipError:
            return self._reject_raw(req.to_bytes(), peer, error)
        for name, value in error.headers:
            resp.headers.add(name, value)
        return [self._transmit(resp, peer)]

    def _reject_raw(self, data: bytes, peer: Peer, error: SipError) -> list[Event | Transmit]:
        """Answer unparseable bytes statelessly, copying what headers can be found."""
        self.stats["bad"] += 1
        if data.startswith(b"SIP/") or re.match(rb"\s*ACK\s", data):
            return []  # never answer a response or an ACK
        headers = Headers()
        for m in _RAW_HEADER.finditer(data):
            value = re.sub(rb"\r?\n[ \t]+", b" ", m.group(2)).strip().decode("utf-8", "replace")
            headers.add(_CANON[m.group(1).lower()], value)
        if not all(h in headers for h in ("Via", "From", "To", "Call-ID", "CSeq")):
            self.stats["dropped"] += 1
            log.info("dropped unanswerable message from %s:%s: %s", peer.host, peer.port, error.reason)
            return []
        log.info("rejecting message from %s:%s: %s %s", peer.host, peer.port, error.status, error.reason)
        resp = Response(error.status, error.reason, headers)
        for name, value in error.headers:
            resp.headers.add(name, value)
        return [Transmit(resp.to_bytes(), peer)]
