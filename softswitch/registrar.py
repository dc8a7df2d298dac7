"""Registrar (RFC 3261 §10.3): REGISTER processing on the location service.

Sans-I/O: ``register()`` takes an already authenticated request and the wall
clock, updates the :class:`LocationStore` and returns the response to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate

from .location import Binding, LocationStore
from .sip.errors import BadRequest, SipError
from .sip.headers import NameAddr, parse_contacts
from .sip.message import Request, Response, make_response
from .sip.peer import Peer
from .sip.uri import SipUri, parse_uri

MAX_CONTACTS_PER_AOR = 16


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600


_date_cache: tuple[int, str] = (0, "")


def _format_date(now: float) -> str:
    """RFC 1123 date for the Date header, computed once per second."""
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]


class Registrar:
    """Adds, refreshes and removes bindings; answers with the current contact set."""

    def __init__(self, store: LocationStore, policy: RegistrarPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or RegistrarPolicy()

    def register(self, req: Request, aor: str, peer: Peer, now: float, to_tag: str) -> Response:
        """Apply a REGISTER for ``aor`` (the authenticated account's user name).

        Raises :class:`SipError` (400, 423, 500, ...) when the request must fail;
        on failure no binding is changed.
        """
        call_id = req.call_id
        cseq = req.cseq.seq
        policy = self.policy
        header_expires = self._header_expires(req)
        contact_values = req.headers.get_list("Contact")

        if any(v.strip() == "*" for v in contact_values):
            if len(contact_values) != 1 or header_expires != 0:
                raise BadRequest("Contact * requires Expires: 0 and no other contacts")
            existing = self.store.raw(aor)
            for b in existing:
                if b.call_id == call_id and cseq <= b.cseq:
                    raise SipError(500, "Out-of-order REGISTER", [("Retry-After", "1")])
            for b in list(existing):
                self.store.delete(aor, b.contact)
            return self._ok(req, aor, now, to_tag)

        changes: list[tuple[NameAddr, str, int]] = []
        for value in contact_values:
            contacts = parse_contacts(value)
            for na in contacts:
                if not isinstance(na.uri, SipUri):
                    raise BadRequest("Contact must be a sip or sips URI")
                expires = na.expires
                if expires is None:
                    expires = header_expires if header_expires is not None else policy.default_expires
                if 0 < expires < policy.min_expires:
                    raise SipError(423, "Interval Too Brief", [("Min-Expires", str(policy.min_expires))])
                changes.append((na, str(na.uri), min(expires, policy.max_expires)))

        existing_list = self.store.raw(aor)
        plan: list[tuple[NameAddr, str, int, Binding | None]] = []
        for na, contact, expires in changes:
            uri = na.uri
            assert isinstance(uri, SipUri)
            match = next((b for b in existing_list if _same_contact(b.contact, uri)), None)
            if match is not None and match.call_id == call_id and cseq <= match.cseq:
                raise SipError(500, "Out-of-order REGISTER", [("Retry-After", "1")])
            plan.append((na, contact, expires, match))

        added = sum(1 for p in plan if p[3] is None and p[2] > 0)
        current = sum(1 for b in existing_list if b.expires_at > now)
        if current + added > MAX_CONTACTS_PER_AOR:
            raise SipError(403, "Too Many Contacts")

        source = f"{peer.transport}:{peer.host}:{peer.port}"
        user_agent = req.headers.get("User-Agent")
        for na, contact, expires, match in plan:
            if expires == 0:
                if match is not None:
                    self.store.delete(aor, match.contact)
                continue
            q = na.q
            instance = na.params.get("+sip.instance")
            self.store.put(
                Binding(
                    aor=aor,
                    contact=match.contact if match is not None else contact,
                    call_id=call_id,
                    cseq=cseq,
                    expires_at=now + expires,
                    q=q,
                    source=source,
                    instance=instance,
                    user_agent=user_agent,
                    updated_at=now,
                )
            )
        return self._ok(req, aor, now, to_tag)

    @staticmethod
    def _header_expires(req: Request) -> int | None:
        raw = req.headers.get("Expires")
        if raw is None:
            return None
        raw = raw.strip()
        if not raw.isdigit():
            raise BadRequest("Bad Expires")
        return min(int(raw), 2**32 - 1)

    def _ok(self, req: Request, aor: str, now: float, to_tag: str) -> Response:
        resp = make_response(req, 200, to_tag=to_tag)
        for b in self.store.bindings(aor, now):
            params = f";expires={b.remaining(now)}"
            if b.q != 1.0:
                params += f";q={b.q:g}"
            resp.headers.add("Contact", f"<{b.contact}>{params}")
        resp.headers.add("Date", _format_date(now))
        return resp


def _same_contact(stored: str, uri: SipUri) -> bool:
    if stored == str(uri):
        return True
    try:
        return parse_uri(stored) == uri
    except SipError:
        return False
