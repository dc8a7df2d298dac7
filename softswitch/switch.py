"""The switch's transaction user: what it does with each request (sans-I/O).

``SwitchCore.receive(data, peer, now, wall)`` returns the bytes to send. Today
it serves REGISTER (with digest auth) and OPTIONS, answers every other request
the way RFC 3261 says, and keeps the location service. Calls, IVR and ACD plug
in here as later layers.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Iterable

from .calls import B2BUA
from .config import Config
from .location import LocationStore
from .registrar import Registrar, RegistrarPolicy
from .sip.auth import Algorithm, AuthResult, Credentials, DigestAuthenticator, parse_auth_header
from .sip.errors import SipError
from .sip.ids import IdGenerator
from .sip.message import Request, Response, make_response
from .sip.peer import Peer
from .sip.stack import SipStack, Transmit
from .sip.transaction import (
    AckReceived,
    ClientTransaction,
    Event,
    InviteServerTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponse,
    TransactionTimeout,
)
from .sip.uri import SipUri

log = logging.getLogger("softswitch.switch")

SERVER_NAME = "softswitch/0.1"
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, REFER, INFO, UPDATE"
# Methods registered with IANA that the switch recognises: 405 when not served, 501 for the rest.
KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "PRACK", "SUBSCRIBE",
    "NOTIFY", "UPDATE", "MESSAGE", "REFER", "PUBLISH",
})  # fmt: skip
SUPPORTED_OPTIONS: frozenset[str] = frozenset()  # option tags we implement (Require: -> 420 for others)


class SwitchCore:
    """Stack + registrar + request dispatch, driven by bytes and clocks."""

    def __init__(
        self,
        config: Config,
        store: LocationStore,
        *,
        ids: IdGenerator | None = None,
        secret: bytes | None = None,
        local_hosts: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.ids = ids or IdGenerator()
        self.stack = SipStack(server_header=SERVER_NAME, new_tag=self.ids.tag)
        self.store = store
        self.registrar = Registrar(
            store,
            RegistrarPolicy(config.min_expires, config.max_expires, config.default_expires),
        )
        self.auth = DigestAuthenticator(
            config.domain,
            self._credentials,
            secret or secrets.token_bytes(32),
            nonce_ttl=config.nonce_ttl,
            algorithms=tuple(Algorithm(a) for a in config.auth_algorithms),
        )
        self.local_hosts = {config.domain.lower(), "localhost", *(h.lower() for h in local_hosts)}
        self.calls: B2BUA | None = None  # set by enable_calls()
        self.stats = {"register_ok": 0, "register_challenged": 0, "register_failed": 0, "options": 0}

    def _credentials(self, user: str) -> Credentials | None:
        account = self.config.accounts.get(user)
        return account.credentials if account is not None else None

    # ---- driving ---------------------------------------------------------
    def receive(self, data: bytes, peer: Peer, now: float, wall: float) -> list[Transmit]:
        """Handle received bytes; ``now`` is monotonic (timers), ``wall`` epoch seconds (bindings)."""
        return self._dispatch(self.stack.receive(data, peer, now), now, wall)

    def enable_calls(self, calls: B2BUA) -> None:
        """Serve INVITEs with the B2BUA (needs the media engine, so the asyncio side builds it)."""
        self.calls = calls

    def handle_timer(self, now: float, wall: float) -> list[Transmit]:
        if self.calls is not None:
            self.calls.handle_timer(now)
        return self._dispatch(self.stack.handle_timer(now), now, wall)

    def next_timer(self) -> float | None:
        at = self.stack.next_timer()
        if self.calls is not None:
            mine = self.calls.next_timer()
            if mine is not None and (at is None or mine < at):
                return mine
        return at

    def _dispatch(self, events: list[Event | Transmit], now: float, wall: float) -> list[Transmit]:
        out: list[Transmit] = []
        for ev in events:
            if isinstance(ev, Transmit):
                out.append(ev)
            elif isinstance(ev, RequestReceived):
                resp: Response | None
                try:
                    resp = self._handle_request(ev.request, ev.transaction, now, wall)
                except SipError as e:
                    resp = self._error(ev.request, e)
                except Exception:
                    log.exception("internal error handling %s", ev.request.method)
                    resp = make_response(ev.request, 500, to_tag=self.ids.tag())
                if resp is not None:  # None: the call layer answers later
                    out.extend(
                        t for t in self.stack.respond(ev.transaction, resp, now) if isinstance(t, Transmit)
                    )
            elif self.calls is None:
                continue
            elif isinstance(ev, AckReceived):
                self.calls.ack(ev.request)
            elif isinstance(ev, ResponseReceived):
                self.calls.response(ev.response, ev.transaction)
            elif isinstance(ev, StrayResponse):
                self.calls.stray_response(ev.response)
            elif isinstance(ev, TransactionTimeout) and isinstance(ev.transaction, ClientTransaction):
                self.calls.timeout(ev.transaction)
        if self.calls is not None and self.calls.pending:
            out.extend(self.calls.pending)
            self.calls.pending.clear()
        return out

    def _error(self, req: Request, e: SipError) -> Response:
        resp = make_response(req, e.status, e.reason, to_tag=self.ids.tag())
        for name, value in e.headers:
            resp.headers.add(name, value)
        return resp

    # ---- requests --------------------------------------------------------
    def _handle_request(
        self, req: Request, txn: ServerTransaction, now: float, wall: float
    ) -> Response | None:
        method = req.method
        uri = req.request_uri
        if method not in KNOWN_METHODS:
            raise SipError(501, "Not Implemented", [("Allow", ALLOW)])
        if method == "CANCEL":
            if self.calls is not None:
                return self.calls.cancel(req, txn, self.stack.transactions.find_cancel_target(req))
            raise SipError(481, "Call/Transaction Does Not Exist")  # §9.2: no matching INVITE
        if method not in ("REGISTER", "OPTIONS") and req.max_forwards == 0:
            raise SipError(483, "Too Many Hops")
        required = [tag for tag in req.headers.get_list("Require") if tag not in SUPPORTED_OPTIONS]
        if required:
            raise SipError(420, "Bad Extension", [("Unsupported", ", ".join(required))])
        if not isinstance(uri, SipUri):
            raise SipError(416, "Unsupported URI Scheme")
        if method == "REGISTER":
            return self._register(req, txn, now, wall)
        if method == "OPTIONS":
            return self._options(req)
        if req.to.tag is not None:  # in a dialog
            if self.calls is not None:
                resp = self.calls.in_dialog(req, txn)
                if resp is not None:
                    return resp
            raise SipError(481, "Call/Transaction Does Not Exist")
        if method == "INVITE" and self.calls is not None:
            assert isinstance(txn, InviteServerTransaction)
            return self._invite(req, txn, uri, wall)
        if method == "BYE":
            raise SipError(481, "Call/Transaction Does Not Exist")
        raise SipError(405, "Method Not Allowed", [("Allow", ALLOW)])

    def _invite(
        self, req: Request, txn: InviteServerTransaction, uri: SipUri, wall: float
    ) -> Response | None:
        """A new call: admit (trunk address or digest), route, hand to the B2BUA."""
        assert self.calls is not None
        trunk = self._trunk_of(txn.peer)
        if trunk is not None:
            from_uri = req.from_.uri
            caller = from_uri.user if isinstance(from_uri, SipUri) and from_uri.user else trunk
        else:
            header = self._credentials_for_realm(req.headers.get_all("Proxy-Authorization"))
            result = self.auth.verify("INVITE", req.uri, header, wall) if header is not None else None
            if result is None or not result.ok or result.user is None:
                if result is not None and not result.stale:
                    log.info("INVITE auth failed from %s: %s", txn.peer.host, result.reason)
                resp = make_response(req, 407, to_tag=self.ids.tag())
                for value in self.auth.challenge(wall, stale=result is not None and result.stale):
                    resp.headers.add("Proxy-Authenticate", value)
                return resp
            caller = result.user
        number = uri.user or ""
        route = self.config.route(number)
        if route is None:
            raise SipError(404, "Not Found (no route)")
        self.calls.invite(req, txn, caller, route.to, number)
        return None

    def _trunk_of(self, peer: Peer) -> str | None:
        for trunk in self.config.trunks.values():
            if trunk.host == peer.host and trunk.port == peer.port:
                return trunk.name
        return None

    def _credentials_for_realm(self, values: list[str]) -> str | None:
        """The Authorization value for our realm (a phone may send one per realm, §22.3)."""
        if len(values) <= 1:
            return values[0] if values else None
        for value in values:
            if parse_auth_header(value)[1].get("realm") == self.config.domain:
                return value
        return values[0]

    def _options(self, req: Request) -> Response:
        self.stats["options"] += 1
        resp = make_response(req, 200, to_tag=self.ids.tag())
        resp.headers.add("Allow", ALLOW)
        resp.headers.add("Accept", "application/sdp")
        resp.headers.add("Accept-Encoding", "identity")
        resp.headers.add("Accept-Language", "en, zh")
        return resp

    def _is_local(self, uri: SipUri) -> bool:
        host = uri.host.strip("[]").lower()
        return host in self.local_hosts or _is_ip(host)

    def _register(self, req: Request, txn: ServerTransaction, now: float, wall: float) -> Response:
        uri = req.request_uri
        assert isinstance(uri, SipUri)
        if not self._is_local(uri):
            raise SipError(404, "Not Found (domain not served here)")
        to_uri = req.to.uri
        if not isinstance(to_uri, SipUri) or not to_uri.user:
            raise SipError(404, "Not Found (To needs an account URI)")
        header = self._credentials_for_realm(req.headers.get_all("Authorization"))
        result: AuthResult | None = None
        if header is not None:
            result = self.auth.verify("REGISTER", req.uri, header, wall)
        if result is None or not result.ok:
            stale = result is not None and result.stale
            if result is not None and not stale:
                self.stats["register_failed"] += 1
                log.info("REGISTER auth failed for %s from %s: %s", to_uri.user, txn.peer.host, result.reason)
            else:
                self.stats["register_challenged"] += 1
            resp = make_response(req, 401, to_tag=self.ids.tag())
            for value in self.auth.challenge(wall, stale=stale):
                resp.headers.add("WWW-Authenticate", value)
            return resp
        if result.user != to_uri.user:
            self.stats["register_failed"] += 1
            raise SipError(403, "Forbidden (credentials do not match the To address)")
        resp = self.registrar.register(req, to_uri.user, txn.peer, wall, self.ids.tag())
        self.stats["register_ok"] += 1
        return resp


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
