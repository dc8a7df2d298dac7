"""HTTP Digest authentication for SIP, server side (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

Sans-I/O: the caller passes ``now`` and the header values; nothing here reads the clock.

Nonces are stateless, 56 hex digits: issue time in µs (16), a counter (8), then the first 16 bytes of
HMAC-SHA256(secret, time+counter ":" realm) (32), so any process holding the same ``secret`` can check one
(pass wall-clock ``now`` if nonces cross processes).
The only state is the per-nonce nonce-count (nc) seen last, kept per process for replay protection, in a
bounded table pruned by expiry.

Error policy: credentials that cannot be parsed, or that lack a directive Digest requires (username,
realm, nonce, uri, response; nc and cnonce with qop), raise ``BadRequest`` (answer 400). Well-formed
credentials that are wrong in any way give ``AuthResult(ok=False)`` (answer 401/407, fresh challenge).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .errors import BadRequest, SipError
from .uri import SipUri, parse_uri

__all__ = [
    "Algorithm",
    "AuthResult",
    "Credentials",
    "DigestAuthenticator",
    "compute_ha1",
    "digest_response",
    "parse_auth_header",
]


class Algorithm(enum.Enum):
    """Digest algorithms offered (the ``-sess`` variants are not)."""

    MD5 = "MD5"
    SHA256 = "SHA-256"


_HASH: dict[Algorithm, Callable[[bytes], hashlib._Hash]] = {
    Algorithm.MD5: hashlib.md5,
    Algorithm.SHA256: hashlib.sha256,
}
_BY_NAME: dict[str, Algorithm] = {"MD5": Algorithm.MD5, "SHA-256": Algorithm.SHA256}


def _encode(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Text decoded with surrogateescape gets its original bytes back; any other lone surrogate
        # cannot match a real password anyway, it only must not raise.
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "surrogatepass")


def _h(algorithm: Algorithm, text: str) -> str:
    return _HASH[algorithm](_encode(text)).hexdigest()


def _same_target(digest_uri: str, request_uri: str) -> bool:
    """The digest ``uri`` names the same server as the Request-URI (scheme, host, port).

    Some clients (SIPp among them) put the server's address without the user part in
    ``uri`` on INVITEs. The digest covers whatever ``uri`` says, so accepting the same
    host and port loses nothing; a ``uri`` for another server is still refused.
    """
    try:
        a, b = parse_uri(digest_uri), parse_uri(request_uri)
    except SipError:
        return False
    if not isinstance(a, SipUri) or not isinstance(b, SipUri):
        return False
    return a.scheme == b.scheme and a.host.lower() == b.host.lower() and a.port == b.port


def compute_ha1(user: str, realm: str, password: str, algorithm: Algorithm) -> str:
    """HA1 = H(user:realm:password), lowercase hex (RFC 7616 §3.4.2)."""
    return _h(algorithm, f"{user}:{realm}:{password}")


def digest_response(
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    algorithm: Algorithm,
    *,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` directive (RFC 7616 §3.4.1; RFC 2069 form when ``qop`` is None).

    ``nc`` and ``cnonce`` are required with ``qop``; values are used exactly as they appear on the wire.
    """
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop is None:
        return _h(algorithm, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise ValueError("qop needs nc and cnonce")
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the account store knows about a user.

    An account configured with only an MD5 HA1 (no clear password) can only authenticate with MD5.
    """

    password: str | None = None
    ha1_md5: str | None = None

    def ha1(self, user: str, realm: str, algorithm: Algorithm) -> str | None:
        """HA1 for ``algorithm``, or None when this account cannot use it."""
        if self.password is not None:
            return compute_ha1(user, realm, self.password, algorithm)
        if self.ha1_md5 is not None and algorithm is Algorithm.MD5:
            return self.ha1_md5.lower()
        return None


# RFC 7230 token; quoted-string with backslash escapes (unrolled loop: linear time). Unquoted values are
# looser than a token because some UAs send e.g. uri=sip:host unquoted.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|\Z)")
_PARAM_RE = re.compile(
    rf'\s*({_TOKEN})\s*=\s*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^\s",=]+))\s*(?:,|\Z)',
    re.DOTALL,
)
_TOKEN68_RE = re.compile(r"([A-Za-z0-9._~+/-]+=*)\s*\Z")
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}\Z")


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split an Authorization / Proxy-Authorization / WWW-Authenticate value into scheme and params.

    The scheme is returned as written; param names are lowercased, quoted values unquoted. A trailing
    comma is tolerated. A token68 (``Basic dXNlcjpwdw==``) comes back as the sole param, named "".
    Raises BadRequest on anything else that is not ``scheme [param=value, ...]``, including a repeated
    param (RFC 7616 §3.4: directives appear at most once).
    """
    m = _SCHEME_RE.match(value)
    if m is None:
        raise BadRequest("Malformed credentials")
    scheme = m.group(1)
    params: dict[str, str] = {}
    pos = m.end()
    end = len(value)
    match = _PARAM_RE.match
    while pos < end:
        m = match(value, pos)
        if m is None:
            if not params:
                m = _TOKEN68_RE.match(value, pos)
                if m is not None:
                    return scheme, {"": m.group(1)}
            raise BadRequest("Malformed credentials")
        name = m.group(1).lower()
        if name in params:
            raise BadRequest("Duplicate credentials parameter")
        quoted = m.group(2)
        if quoted is None:
            params[name] = m.group(3)
        else:
            params[name] = _UNESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = m.end()
    return scheme, params


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of :meth:`DigestAuthenticator.verify`.

    ``user`` is set only when ``ok``. ``stale`` means the credentials were right but the nonce is no longer
    usable: re-challenge with ``stale=true`` so the client retries without asking its user.
    ``reason`` is for logs only, never send it to the client.
    """

    ok: bool
    user: str | None = None
    stale: bool = False
    reason: str = ""


_NONCE_LEN = 56  # 16 hex time + 8 hex counter + 32 hex MAC
_NO_QOP = 1 << 32  # recorded nc for a qop-less use: above any 8-hex nc, so the nonce is spent
_DUMMY_PASSWORD = "\x00no such user\x00"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DigestAuthenticator:
    """Issues challenges and checks Digest credentials for one realm.

    ``lookup(user)`` returns the account's Credentials, or None for an unknown user. ``secret`` keys the
    nonce MAC; share it between processes that must accept each other's nonces. Offered algorithms are
    always challenged SHA-256 first.  ``max_tracked`` caps the per-nonce nc table; a nonce evicted from it
    before expiry is answered stale (never accepted again), so replay protection survives floods.
    """

    __slots__ = (
        "_algorithms",
        "_challenge_parts",
        "_counter",
        "_lookup",
        "_mac_suffix",
        "_max_tracked",
        "_secret",
        "_seen",
        "_ttl_us",
        "_watermark_us",
        "realm",
    )

    def __init__(
        self,
        realm: str,
        lookup: Callable[[str], Credentials | None],
        secret: bytes,
        *,
        nonce_ttl: float = 300.0,
        algorithms: tuple[Algorithm, ...] = (Algorithm.SHA256, Algorithm.MD5),
        max_tracked: int = 100_000,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one algorithm is required")
        if not secret:
            raise ValueError("secret must not be empty")
        if nonce_ttl <= 0 or max_tracked <= 0:
            raise ValueError("nonce_ttl and max_tracked must be positive")
        self.realm = realm
        self._lookup = lookup
        self._secret = bytes(secret)
        self._ttl_us = int(nonce_ttl * 1_000_000)
        self._algorithms = frozenset(algorithms)
        self._max_tracked = max_tracked
        self._mac_suffix = b":" + _encode(realm)
        self._counter = 0
        # nonce -> last nc accepted, in order of first use (so roughly issue order: pruning pops the front).
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._watermark_us = -1  # nonces issued at or before this, and not in _seen, were dropped
        head = f"Digest realm={_quote(realm)}, nonce="
        self._challenge_parts = [
            (head, f', algorithm={a.value}, qop="auth"') for a in dict.fromkeys(algorithms)
        ]

    # -- nonces ---------------------------------------------------------------------------------------------

    def _mac(self, payload: str) -> str:
        return hmac.digest(self._secret, payload.encode() + self._mac_suffix, "sha256")[:16].hex()

    def make_nonce(self, now: float) -> str:
        """A fresh nonce stamped with ``now`` (unique within this authenticator)."""
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        payload = f"{max(0, int(now * 1_000_000)) & 0xFFFFFFFFFFFFFFFF:016x}{self._counter:08x}"
        return payload + self._mac(payload)

    def _nonce_time(self, nonce: str) -> int | None:
        """Issue time in µs of a nonce we made, or None for a forged or garbled one."""
        if len(nonce) != _NONCE_LEN or not nonce.isascii():
            return None
        payload = nonce[:24]
        if not hmac.compare_digest(self._mac(payload), nonce[24:]):
            return None
        return int(payload[:16], 16)  # MAC verified: payload is our own hex

    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per offered algorithm, in the given order."""
        nonce = self.make_nonce(now)
        tail = ", stale=true" if stale else ""
        return [f'{head}"{nonce}"{rest}{tail}' for head, rest in self._challenge_parts]

    # -- verification ---------------------------------------------------------------------------------------

    @staticmethod
    def username_of(header_value: str) -> str | None:
        """The Digest ``username`` in a credentials header, or None (never raises)."""
        try:
            scheme, params = parse_auth_header(header_value)
        except BadRequest:
            return None
        return params.get("username") if scheme.lower() == "digest" else None

    def verify(self, method: str, request_uri: str, header_value: str, now: float) -> AuthResult:
        """Check an Authorization / Proxy-Authorization value for a request.

        ``request_uri`` is the raw Request-URI text; the ``uri`` directive must equal it exactly.
        Raises BadRequest for unparseable credentials or missing required directives.
        """
        scheme, p = parse_auth_header(header_value)
        if scheme.lower() != "digest":
            return AuthResult(False, reason=f"unsupported scheme {scheme!r}")
        try:
            username = p["username"]
            realm = p["realm"]
            nonce = p["nonce"]
            uri = p["uri"]
            response = p["response"]
        except KeyError as exc:
            raise BadRequest(f"Credentials lack {exc.args[0]}") from None
        qop = p.get("qop")
        nc = _NO_QOP
        cnonce = nc_text = None
        if qop is not None:
            nc_text = p.get("nc")
            cnonce = p.get("cnonce")
            if nc_text is None or cnonce is None:
                raise BadRequest("Credentials with qop lack nc or cnonce")
            if _NC_RE.match(nc_text) is None:
                raise BadRequest("Malformed nc in credentials")
            nc = int(nc_text, 16)

        if realm != self.realm:
            return AuthResult(False, reason=f"realm mismatch {realm!r}")
        if uri != request_uri and not _same_target(uri, request_uri):
            # RFC 2617 §3.2.2.5 suggests 400 here; a fresh challenge is as safe and friendlier to clients.
            return AuthResult(False, reason=f"uri mismatch {uri!r} != {request_uri!r}")
        alg_name = p.get("algorithm")
        algorithm = Algorithm.MD5 if alg_name is None else _BY_NAME.get(alg_name.upper())
        if algorithm is None or algorithm not in self._algorithms:
            return AuthResult(False, reason=f"algorithm not offered {alg_name!r}")
        if qop is not None and qop.lower() != "auth":
            return AuthResult(False, reason=f"qop not offered {qop!r}")
        if p.get("userhash", "false").lower() != "false":
            return AuthResult(False, reason="userhash not offered")
        issued_us = self._nonce_time(nonce)
        if issued_us is None:
            return AuthResult(False, reason="forged or garbled nonce")

        creds = self._lookup(username)
        ha1 = None if creds is None else creds.ha1(username, realm, algorithm)
        usable = ha1 is not None
        if ha1 is None:  # same hashing work as a real account, so timing does not tell users apart
            ha1 = compute_ha1(username, realm, _DUMMY_PASSWORD, algorithm)
        expected = digest_response(ha1, method, uri, nonce, algorithm, qop=qop, nc=nc_text, cnonce=cnonce)
        given = response.lower() if response.isascii() else ""
        if not hmac.compare_digest(expected, given) or not usable:
            if creds is None:
                return AuthResult(False, reason=f"unknown user {username!r}")
            if not usable:
                return AuthResult(False, reason=f"no {algorithm.value} credentials for {username!r}")
            return AuthResult(False, reason=f"wrong response for {username!r}")

        now_us = int(now * 1_000_000)
        if issued_us > now_us or now_us - issued_us > self._ttl_us:
            return AuthResult(False, stale=True, reason=f"nonce expired for {username!r}")
        seen = self._seen
        last = seen.get(nonce)
        if last is None:
            if issued_us <= self._watermark_us:
                return AuthResult(False, stale=True, reason=f"nonce no longer tracked for {username!r}")
            if nc == 0:  # nc counts from 1 (RFC 7616 §3.4); stale would make such a client loop
                return AuthResult(False, reason=f"nc 0 from {username!r}")
            self._track(nonce, nc, now_us)
        elif nc <= last or nc == _NO_QOP:
            return AuthResult(False, stale=True, reason=f"nonce reused (nc {nc_text}) by {username!r}")
        else:
            seen[nonce] = nc
        return AuthResult(True, user=username)

    def _track(self, nonce: str, nc: int, now_us: int) -> None:
        seen = self._seen
        cutoff = now_us - self._ttl_us
        # Drop expired nonces from the front (first-use order, which roughly follows issue order).
        while seen:
            first = next(iter(seen))
            issued = int(first[:16], 16)
            if issued >= cutoff and len(seen) < self._max_tracked:
                break
            seen.popitem(last=False)
            if issued > self._watermark_us:
                self._watermark_us = issued
        seen[nonce] = nc

    @property
    def tracked_nonces(self) -> int:
        """How many nonces have their nc tracked now (for metrics and tests)."""
        return len(self._seen)
