"""Dialogs (RFC 3261 §12) for a B2BUA, and session timer negotiation (RFC 4028).

A B2BUA call is two dialogs: a UAS-role dialog towards the caller
(:meth:`Dialog.from_uas`) and a UAC-role dialog towards the callee
(:meth:`Dialog.from_uac`). Either side may later send requests inside its
dialog (:meth:`Dialog.new_request`) and receive them
(:meth:`Dialog.accept_request`).

Dialog ids are always seen from our side: ``(Call-ID, local tag, remote tag)``.
In a request we receive the local tag is the To tag; in a response to a request
we sent (whatever the dialog's role) it is the From tag. Tags are compared as
written (case-sensitively), like Call-IDs.

Routing: the route set is used as a loose route set (RFC 3261 §16.12.1.1). If
its first entry lacks ``;lr`` the pre-RFC 3261 strict-routing fallback of
§12.2.1.1 is applied (first route URI in the Request-URI, remote target
appended as last Route), so old strict routers keep working.

Sans-I/O: nothing here reads a clock or draws randomness; branches are passed
in, and session timer helpers return durations for the caller to schedule.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .errors import BadRequest, SipError
from .headers import parse_contacts, parse_name_addr, parse_params
from .message import Headers, Request, Response
from .peer import Peer
from .uri import SipUri

__all__ = [
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogState",
    "DialogTable",
    "Refresher",
    "SessionExpires",
    "SessionTimer",
    "dialog_id_of_request",
    "dialog_id_of_response",
    "make_cancel",
    "negotiate_session_timer",
    "parse_min_se",
    "parse_session_expires",
    "session_timer_from_response",
    "session_timer_request_headers",
    "session_timer_retry_interval",
]

# Requests whose Contact replaces the remote target (RFC 3261 §12.2, RFC 3311, RFC 6665, RFC 3515).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
MAX_FORWARDS = "70"


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogError(Exception):
    """A local misuse of a dialog (e.g. sending a request in a terminated dialog)."""


class DialogId(NamedTuple):
    """The dialog key from our side (RFC 3261 §12). A missing remote tag is ``""``."""

    call_id: str
    local_tag: str
    remote_tag: str


def dialog_id_of_request(request: Request) -> DialogId | None:
    """The id of the dialog a received request belongs to; None if it has no To tag (out of dialog)."""
    local = request.to.tag
    if not local:
        return None
    return DialogId(request.call_id, local, request.from_.tag or "")


def dialog_id_of_response(response: Response) -> DialogId | None:
    """The id of the dialog a response to one of our requests belongs to; None without a To tag.

    Different To tags in responses to one INVITE are different (forked) dialogs.
    """
    remote = response.to.tag
    local = response.from_.tag
    if not remote or not local:
        return None
    return DialogId(response.call_id, local, remote)


def _contact_target(message: Request | Response) -> str | None:
    """The URI of the first Contact, fit for a Request-URI (no headers or method parameter)."""
    raw = message.headers.get("Contact")
    if raw is None:
        return None
    uri = parse_contacts(raw)[0].uri
    if isinstance(uri, SipUri) and (uri.headers or "method" in uri.params):
        uri = SipUri(
            uri.scheme,
            uri.user,
            uri.password,
            uri.host,
            uri.port,
            {k: v for k, v in uri.params.items() if k != "method"},
        )
    return str(uri)


def _is_sips(request: Request, peer: Peer) -> bool:
    """§12.1.1 / §12.1.2: TLS transport and a SIPS Request-URI."""
    return peer.transport == "tls" and request.uri[:5].lower() == "sips:"


def _via(transport: str, host: str, port: int, branch: str) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # bare IPv6 address
    return f"SIP/2.0/{transport.upper()} {host}:{port};branch={branch};rport"


@dataclass(slots=True, eq=False)
class Dialog:
    """One dialog's state (RFC 3261 §12.1).

    ``local_uri`` / ``remote_uri`` are the From / To header values of the requests
    we send in this dialog, tags included. ``remote_target`` is the remote Contact
    URI; ``route_set`` holds Route values in the order they go into requests.
    ``local_seq`` 0 means "empty" (a UAS-role dialog that has sent nothing yet);
    ``remote_seq`` None means empty. ``local_contact`` is our Contact header value.
    ``invite_cseq`` is the CSeq number of the INVITE that created the dialog.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    local_seq: int
    remote_seq: int | None
    remote_target: str
    route_set: list[str]
    secure: bool
    state: DialogState
    peer: Peer
    is_uac: bool
    local_contact: str = ""
    invite_cseq: int = 0

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # -- creation

    @classmethod
    def from_uas(cls, invite: Request, response: Response, peer: Peer) -> Dialog:
        """The dialog a UAS creates when it sends ``response`` (101-199 with a To tag, or 2xx) (§12.1.1).

        ``peer`` is where the INVITE came from. Raise BadRequest if the INVITE has no Contact.
        """
        status = response.status
        if not 101 <= status < 300:
            raise DialogError(f"a {status} response does not create a dialog")
        local_tag = response.to.tag
        if not local_tag:
            raise DialogError("the response has no To tag")
        target = _contact_target(invite)
        if target is None:
            raise BadRequest("Missing Contact")
        to, from_ = response.headers.get("To"), invite.headers.get("From")
        assert to is not None and from_ is not None  # .to.tag and .from_ parsed them
        seq = invite.cseq.seq
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_.tag or "",
            local_uri=to,
            remote_uri=from_,
            local_seq=0,
            remote_seq=seq,
            remote_target=target,
            route_set=invite.headers.get_list("Record-Route"),
            secure=_is_sips(invite, peer),
            state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
            peer=peer,
            is_uac=False,
            local_contact=response.headers.get("Contact") or "",
            invite_cseq=seq,
        )

    @classmethod
    def from_uac(cls, invite: Request, response: Response, peer: Peer) -> Dialog:
        """The dialog a UAC creates on a 101-199 with a To tag (early) or a 2xx (confirmed) (§12.1.2).

        ``peer`` is where the INVITE was sent. A response without Contact (a broken peer)
        falls back to the INVITE's Request-URI as remote target. Raise BadRequest if the
        response has no To tag.
        """
        status = response.status
        if not 101 <= status < 300:
            raise DialogError(f"a {status} response does not create a dialog")
        remote_tag = response.to.tag
        if not remote_tag:
            raise BadRequest("Missing To tag")
        local_tag = invite.from_.tag
        if not local_tag:
            raise DialogError("the INVITE has no From tag")
        from_, to = invite.headers.get("From"), response.headers.get("To")
        assert to is not None and from_ is not None
        seq = invite.cseq.seq
        routes = response.headers.get_list("Record-Route")
        routes.reverse()
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=from_,
            remote_uri=to,
            local_seq=seq,
            remote_seq=None,
            remote_target=_contact_target(response) or invite.uri,
            route_set=routes,
            secure=_is_sips(invite, peer),
            state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
            peer=peer,
            is_uac=True,
            local_contact=invite.headers.get("Contact") or "",
            invite_cseq=seq,
        )

    # -- state changes driven by responses

    def response_received(self, response: Response) -> None:
        """Update on a response to a request we sent in this dialog (or to the INVITE that made it).

        UAC-role early dialog: a 2xx to the INVITE confirms it and recomputes the route set
        and remote target (§13.2.2.4); a 1xx with Contact refreshes the remote target; a
        non-2xx final response terminates it (§12.3). Any dialog: 408/481 terminate it
        (§12.2.1.2); a 2xx to a target refresh request (re-INVITE, UPDATE, ...) replaces
        the remote target with its Contact.
        """
        status = response.status
        method = response.cseq.method
        if self.state is DialogState.EARLY and self.is_uac and method == "INVITE":
            if status >= 300:
                self.state = DialogState.TERMINATED
                return
            if status >= 200:
                self.state = DialogState.CONFIRMED
                routes = response.headers.get_list("Record-Route")
                routes.reverse()
                self.route_set = routes
            target = _contact_target(response)
            if target is not None:
                self.remote_target = target
            return
        if status in (408, 481):
            self.state = DialogState.TERMINATED
        elif 200 <= status < 300 and method in TARGET_REFRESH_METHODS:
            target = _contact_target(response)
            if target is not None:
                self.remote_target = target

    def response_sent(self, response: Response) -> None:
        """Update on a response we send to the INVITE that created a UAS-role dialog.

        An early dialog is confirmed by a 2xx and terminated by a non-2xx final response.
        """
        if self.state is DialogState.EARLY and response.cseq.method == "INVITE":
            if 200 <= response.status < 300:
                self.state = DialogState.CONFIRMED
                contact = response.headers.get("Contact")
                if contact:
                    self.local_contact = contact
            elif response.status >= 300:
                self.state = DialogState.TERMINATED

    # -- receiving requests (§12.2.2)

    def accept_request(self, request: Request) -> None:
        """Check and record a request received in this dialog.

        Raise ``SipError(500)`` when its CSeq is lower than the remote sequence number
        (out of order) and ``SipError(481)`` when the dialog is terminated. ACK and
        CANCEL carry their INVITE's CSeq and are not checked. A target refresh request
        with a Contact replaces the remote target; BYE terminates the dialog.
        """
        if self.state is DialogState.TERMINATED:
            raise SipError(481, "Call/Transaction Does Not Exist")
        method = request.method
        if method == "ACK" or method == "CANCEL":
            return
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            raise SipError(500, "Out of Order CSeq")
        self.remote_seq = seq
        if method == "BYE":
            self.state = DialogState.TERMINATED
        elif method in TARGET_REFRESH_METHODS:
            target = _contact_target(request)
            if target is not None:
                self.remote_target = target

    # -- building requests (§12.2.1.1)

    def new_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        branch: str,
        via_host: str,
        via_port: int,
        transport: str,
    ) -> Request:
        """A request inside this dialog with CSeq = ++local_seq.

        Contact (``local_contact``) is added to target refresh requests. Sending BYE
        terminates the dialog (§15.1.1). ACK for a 2xx is :meth:`ack_for_2xx`; CANCEL
        is :func:`make_cancel`.
        """
        if method == "ACK" or method == "CANCEL":
            raise DialogError(f"{method} is not built with new_request")
        if self.state is DialogState.TERMINATED:
            raise DialogError(f"cannot send {method}: dialog terminated")
        self.local_seq += 1
        contact = self.local_contact if method in TARGET_REFRESH_METHODS else ""
        request = self._build(
            method, self.local_seq, body, content_type, extra_headers, branch, via_host, via_port,
            transport, contact,
        )  # fmt: skip
        if method == "BYE":
            self.state = DialogState.TERMINATED
        return request

    def ack_for_2xx(
        self,
        invite_cseq: int,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        branch: str,
        via_host: str,
        via_port: int,
        transport: str,
    ) -> Request:
        """The ACK for a 2xx to the INVITE with CSeq ``invite_cseq`` (§13.2.2.4).

        Built like any in-dialog request (Route set, remote target, tags) but with the
        INVITE's CSeq number and method ACK, in a new transaction (new ``branch``).
        It does not change ``local_seq``. Pass the answer in ``body`` if the 2xx held an offer.
        ``extra_headers`` carries the INVITE's credentials (Authorization) if it had any.
        """
        return self._build(
            "ACK", invite_cseq, body, content_type, extra_headers, branch, via_host, via_port, transport, ""
        )

    def _build(
        self,
        method: str,
        seq: int,
        body: bytes,
        content_type: str | None,
        extra_headers: Iterable[tuple[str, str]],
        branch: str,
        via_host: str,
        via_port: int,
        transport: str,
        contact: str,
    ) -> Request:
        uri = self.remote_target
        routes = self.route_set
        first = parse_name_addr(routes[0]).uri if routes else None
        if first is not None and not (isinstance(first, SipUri) and "lr" in first.params):
            # strict router (§12.2.1.1): its URI becomes the Request-URI, the target the last Route
            if isinstance(first, SipUri) and (first.headers or "method" in first.params):
                first = SipUri(
                    first.scheme, first.user, first.password, first.host, first.port,
                    {k: v for k, v in first.params.items() if k != "method"},
                )  # fmt: skip
            routes = [*routes[1:], f"<{uri}>"]
            uri = str(first)
        items = [("Via", _via(transport, via_host, via_port, branch)), ("Max-Forwards", MAX_FORWARDS)]
        items += [("Route", route) for route in routes]
        items += [
            ("From", self.local_uri),
            ("To", self.remote_uri),
            ("Call-ID", self.call_id),
            ("CSeq", f"{seq} {method}"),
        ]
        if contact:
            items.append(("Contact", contact if "<" in contact else f"<{contact}>"))
        items.extend(extra_headers)
        if content_type is not None:
            items.append(("Content-Type", content_type))
        return Request(method, uri, Headers(items), body)


def make_cancel(invite: Request) -> Request:
    """The CANCEL for a pending INVITE we sent (RFC 3261 §9.1).

    Same Request-URI, Call-ID, From, To (no tag added) and CSeq number (method
    CANCEL), a single Via equal to the INVITE's top Via (so it matches the INVITE's
    transaction at the next hop) and the INVITE's Route headers. Only send it once a
    provisional response has arrived.
    """
    h = invite.headers
    from_, to, call_id = h.get("From"), h.get("To"), h.get("Call-ID")
    vias = h.get_list("Via")
    if from_ is None or to is None or call_id is None or not vias:
        raise DialogError("the INVITE lacks Via, From, To or Call-ID")
    items = [("Via", vias[0]), ("Max-Forwards", MAX_FORWARDS)]
    items += [("Route", route) for route in h.get_all("Route")]
    items += [("From", from_), ("To", to), ("Call-ID", call_id), ("CSeq", f"{invite.cseq.seq} CANCEL")]
    return Request("CANCEL", invite.uri, Headers(items))


class DialogTable:
    """Dialogs by :class:`DialogId`, with the lookups a B2BUA needs.

    Also indexes dialogs by (Call-ID, local tag) so the forks of one INVITE (one
    early dialog per To tag) can be found together.
    """

    __slots__ = ("_dialogs", "_forks")

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}
        self._forks: dict[tuple[str, str], dict[str, Dialog]] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, key: object) -> bool:
        return key in self._dialogs

    def add(self, dialog: Dialog) -> None:
        key = dialog.id
        if key in self._dialogs:
            raise DialogError(f"dialog {key} already exists")
        self._dialogs[key] = dialog
        self._forks.setdefault((dialog.call_id, dialog.local_tag), {})[dialog.remote_tag] = dialog

    def remove(self, dialog: Dialog) -> None:
        """Forget ``dialog`` (no error if it is not in the table)."""
        key = dialog.id
        if self._dialogs.get(key) is not dialog:
            return
        del self._dialogs[key]
        group_key = (dialog.call_id, dialog.local_tag)
        group = self._forks[group_key]
        del group[dialog.remote_tag]
        if not group:
            del self._forks[group_key]

    def get(self, key: DialogId) -> Dialog | None:
        return self._dialogs.get(key)

    def match_request(self, request: Request) -> Dialog | None:
        """The dialog a received request belongs to, or None."""
        key = dialog_id_of_request(request)
        return None if key is None else self._dialogs.get(key)

    def match_response(self, response: Response) -> Dialog | None:
        """The dialog a response to one of our requests belongs to, or None."""
        key = dialog_id_of_response(response)
        return None if key is None else self._dialogs.get(key)

    def forks(self, call_id: str, local_tag: str) -> list[Dialog]:
        """Every dialog created by our INVITE with this Call-ID and From tag (one per To tag)."""
        group = self._forks.get((call_id, local_tag))
        return list(group.values()) if group else []

    def uac_response(self, invite: Request, response: Response, peer: Peer) -> Dialog | None:
        """Feed a response to a dialog-creating INVITE we sent; return its dialog.

        A 101-299 with a To tag updates the dialog of that To tag, or creates it (a new
        fork). A non-2xx final response terminates and removes every early fork; None
        is returned then, and for 100 or a response without To tag.
        """
        status = response.status
        if status >= 300:
            for fork in self.forks(invite.call_id, invite.from_.tag or ""):
                if fork.state is DialogState.EARLY:
                    fork.state = DialogState.TERMINATED
                    self.remove(fork)
            return None
        if status == 100:
            return None
        key = dialog_id_of_response(response)
        if key is None:
            return None
        dialog = self._dialogs.get(key)
        if dialog is None:
            dialog = Dialog.from_uac(invite, response, peer)
            self.add(dialog)
        else:
            dialog.response_received(response)
        return dialog


# -- RFC 4028 session timers


class Refresher(enum.Enum):
    """Which side of the dialog (in the INVITE's terms) sends the refreshes."""

    UAC = "uac"
    UAS = "uas"


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """A parsed Session-Expires value: interval in seconds and the optional refresher."""

    interval: int
    refresher: Refresher | None = None

    def __str__(self) -> str:
        if self.refresher is None:
            return str(self.interval)
        return f"{self.interval};refresher={self.refresher.value}"


def _delta_seconds(text: str, header: str) -> tuple[int, str]:
    value, sep, rest = text.strip().partition(";")
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) == 0:
        raise BadRequest(f"Bad {header}")
    return int(value), sep + rest


def parse_session_expires(value: str) -> SessionExpires:
    """Parse ``"1800;refresher=uac"`` (RFC 4028 §4); raise BadRequest if malformed."""
    interval, rest = _delta_seconds(value, "Session-Expires")
    refresher = None
    if rest:
        raw = parse_params(rest).get("refresher")
        if raw is not None:
            try:
                refresher = Refresher(raw.lower())
            except ValueError:
                raise BadRequest("Bad Session-Expires refresher") from None
    return SessionExpires(interval, refresher)


def parse_min_se(value: str) -> int:
    """Parse a Min-SE value (RFC 4028 §5); raise BadRequest if malformed."""
    interval, rest = _delta_seconds(value, "Min-SE")
    if rest:
        parse_params(rest)  # validates the generic parameters
    return interval


def _has_timer(request: Request | Response, header: str) -> bool:
    return any(tag.lower() == "timer" for tag in request.headers.get_list(header))


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """A negotiated session timer: interval (s), who refreshes, and whether 2xx needs Require: timer."""

    interval: int
    refresher: Refresher
    require: bool = False

    @property
    def refresh_after(self) -> float:
        """Seconds after a refresh (or the 2xx) at which the refresher sends the next one (§7.4)."""
        return self.interval / 2

    @property
    def expire_after(self) -> float:
        """Seconds without a refresh after which the other side sends BYE (§10)."""
        return self.interval - min(32, self.interval / 3)

    def we_refresh(self, *, uas: bool) -> bool:
        """Whether we send the refreshes, given our role in the INVITE transaction."""
        return (self.refresher is Refresher.UAS) == uas

    def response_headers(self) -> list[tuple[str, str]]:
        """Headers for the 2xx: Session-Expires with refresher, plus Require: timer if needed (§9)."""
        headers = [("Session-Expires", f"{self.interval};refresher={self.refresher.value}")]
        if self.require:
            headers.append(("Require", "timer"))
        return headers


def negotiate_session_timer(
    invite: Request,
    *,
    min_se: int = 90,
    our_default: int = 1800,
    prefer: Refresher = Refresher.UAC,
    always: bool = False,
) -> SessionTimer | None:
    """The session timer a UAS answers ``invite`` with (RFC 4028 §9), or None for no timer.

    A UAC supporting timers (Supported or Require: timer) whose Session-Expires is below
    ``min_se`` gets ``SipError(422)`` with our Min-SE. The interval is the request's, reduced
    to ``our_default`` but never below the request's Min-SE or ``min_se`` (nor ever raised).
    Without Session-Expires, a supporting UAC gets ``max(our_default, Min-SE)``. The refresher
    follows Table 2: the request's if the UAC supports timers, else ``prefer`` when it supports
    them without naming one, else the UAS. A request with neither Session-Expires nor timer
    support gets None, unless ``always`` (then the UAS refreshes, without Require).
    """
    supported = _has_timer(invite, "Supported") or _has_timer(invite, "Require")
    se_raw = invite.headers.get("Session-Expires")
    min_raw = invite.headers.get("Min-SE")
    their_min = parse_min_se(min_raw) if min_raw is not None else 0
    floor = max(min_se, their_min)
    if se_raw is None:
        if not supported and not always:
            return None
        interval = max(our_default, floor)
        requested: Refresher | None = None
    else:
        se = parse_session_expires(se_raw)
        if se.interval < min_se and supported:
            raise SipError(422, "Session Interval Too Small", [("Min-SE", str(min_se))])
        # reduce to our default, not below either minimum, and never above the request's value
        interval = min(se.interval, max(our_default, floor))
        requested = se.refresher
    if not supported:
        return SessionTimer(interval, Refresher.UAS, require=False)
    refresher = requested or prefer
    return SessionTimer(interval, refresher, require=True)


def session_timer_request_headers(interval: int = 1800, min_se: int = 90) -> list[tuple[str, str]]:
    """Session-Expires and Min-SE for an INVITE we send (RFC 4028 §7.1).

    No refresher is named, letting the UAS choose. Add ``timer`` to the INVITE's Supported too.
    """
    return [("Session-Expires", str(interval)), ("Min-SE", str(min_se))]


def session_timer_retry_interval(response: Response, interval: int) -> int:
    """The Session-Expires to retry with after a 422 (RFC 4028 §7.3): the larger of ours and its Min-SE."""
    raw = response.headers.get("Min-SE")
    if raw is None:
        raise BadRequest("Missing Min-SE")
    return max(interval, parse_min_se(raw))


def session_timer_from_response(response: Response) -> SessionTimer | None:
    """The session timer a 2xx to our INVITE settled (RFC 4028 §7.2), None if it has no Session-Expires.

    A missing refresher parameter is read as ``uac`` (we refresh), so a session is never left
    with no refresher.
    """
    raw = response.headers.get("Session-Expires")
    if raw is None:
        return None
    se = parse_session_expires(raw)
    return SessionTimer(se.interval, se.refresher or Refresher.UAC, _has_timer(response, "Require"))
