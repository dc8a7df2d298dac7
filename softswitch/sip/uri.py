"""SIP, SIPS, tel and other URIs (RFC 3261 §19 and §25, RFC 3966, RFC 5118).

``parse_uri`` validates with one precompiled regex and builds a :class:`SipUri`,
:class:`TelUri` or :class:`AbsoluteUri`. Parsed parts are kept as written (escapes
included) so ``str()`` gives back canonical input unchanged; equality follows the
comparison rules of RFC 3261 §19.1.4.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TypeAlias

from softswitch.sip.errors import BadRequest

__all__ = ["AbsoluteUri", "SipUri", "TelUri", "Uri", "format_params", "parse_uri"]

# Building blocks shared with headers.py (plain pattern text, no groups).
UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# A hostname, IPv4 address or bracketed IPv6 reference. Hostnames also accept "_" (seen in
# the wild); IPv6 references are checked further by _check_ipv6.
HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.\-]*"

_USER = rf"[{UNRESERVED}%&=+$,;?/]+"
_PASSWORD = rf"[{UNRESERVED}%&=+$,]*"
_PARAMCHARS = rf"[{UNRESERVED}%\[\]/:&+$]+"
_HNVCHARS = rf"[{UNRESERVED}%\[\]/?:+$]"

_SIP_RE = re.compile(
    r"(?P<scheme>[Ss][Ii][Pp][Ss]?):"
    rf"(?:(?P<user>{_USER})(?::(?P<password>{_PASSWORD}))?@)?"
    rf"(?P<host>{HOST})"
    r"(?::(?P<port>[0-9]{1,5}))?"
    rf"(?P<params>(?:;{_PARAMCHARS}(?:=(?:{_PARAMCHARS})?)?)*)"
    rf"(?:\?(?P<headers>{_HNVCHARS}+=?{_HNVCHARS}*(?:&{_HNVCHARS}+=?{_HNVCHARS}*)*))?",
    re.ASCII,
)
_TEL_RE = re.compile(
    rf"[Tt][Ee][Ll]:(?P<number>\+?[0-9A-Fa-f*#\-.()]+)(?P<params>(?:;{_PARAMCHARS}(?:=(?:{_PARAMCHARS})?)?)*)",
    re.ASCII,
)
_ABSOLUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"]+")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")

# RFC 3261 §19.1.4: an escaped reserved character differs from the literal one.
_RESERVED = frozenset(";/?:@&=+$,")
# URI parameters that must match when present in either URI (§19.1.4).
_STRICT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _unescape_match(m: re.Match[str]) -> str:
    octet = int(m.group(1), 16)
    if octet < 0x80 and chr(octet) not in _RESERVED:
        return chr(octet)
    return "%" + m.group(1).upper()


def _normalize_escapes(text: str) -> str:
    """Decode %HH of unreserved ASCII characters; keep (upper-cased) the others.

    The result is ASCII, injective, and equal for strings that RFC 3261 §19.1.4 deems equal.
    """
    if "%" not in text:
        return text
    return _ESCAPE_RE.sub(_unescape_match, text)


def _host_key(host: str) -> str:
    """Host normalised for comparison: lower case, IPv6 references in compressed form."""
    host = host.lower()
    if host.startswith("["):
        try:
            return "[" + ipaddress.IPv6Address(host[1:-1]).compressed + "]"
        except ValueError:
            return host
    return host


def _check_ipv6(host: str, text: str) -> None:
    inner = host[1:-1]
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        # RFC 5118 §4.10: tolerate the "::: before an IPv4 tail" form allowed by RFC 3261's ABNF bug.
        try:
            ipaddress.IPv6Address(inner.replace(":::", "::", 1))
        except ValueError:
            raise BadRequest(f"Bad URI: bad IPv6 reference in {text!r}") from None
        if not re.search(r":::\d+\.\d+\.\d+\.\d+$", inner):
            raise BadRequest(f"Bad URI: bad IPv6 reference in {text!r}") from None


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text[1:].split(";"):
        name, sep, value = item.partition("=")
        params[name.lower()] = value if sep else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Serialise parameters as ``;name=value`` / ``;name`` (no spaces)."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True, eq=False)
class SipUri:
    """A ``sip:`` or ``sips:`` URI. Parts are kept as written (escapes included).

    ``params`` names are lower-cased (value ``None`` for a parameter without ``=``);
    ``host`` keeps IPv6 brackets. Equality follows RFC 3261 §19.1.4.
    """

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased, or None."""
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def aor(self) -> str:
        """Address-of-record key: ``scheme:user@host`` with escapes normalised and host lower-cased.

        Port, parameters and headers are dropped (RFC 3261 §10.3 step 5).
        """
        host = _host_key(self.host)
        if self.user is None:
            return f"{self.scheme}:{host}"
        return f"{self.scheme}:{_normalize_escapes(self.user)}@{host}"

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += (":", self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += (":", str(self.port))
        if self.params:
            parts.append(format_params(self.params))
        if self.headers:
            parts += ("?", "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def __hash__(self) -> int:
        return hash((self.scheme, _opt_norm(self.user), _host_key(self.host)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipUri):
            return NotImplemented
        if self.scheme != other.scheme or self.port != other.port:
            return False
        if _opt_norm(self.user) != _opt_norm(other.user):
            return False
        if _opt_norm(self.password) != _opt_norm(other.password):
            return False
        if _host_key(self.host) != _host_key(other.host):
            return False
        mine, theirs = _norm_params(self.params), _norm_params(other.params)
        for name in _STRICT_PARAMS:
            if (name in mine or name in theirs) and not _value_eq(mine.get(name), theirs.get(name)):
                return False
        for name, value in mine.items():
            if name in theirs and not _value_eq(value, theirs[name]):
                return False
        return _norm_headers(self.headers) == _norm_headers(other.headers)


def _norm_params(params: dict[str, str | None]) -> dict[str, str | None]:
    """Parameters keyed by escape-normalised names (the common case: no escapes, no copy)."""
    if not any("%" in name for name in params):
        return params
    return {_normalize_escapes(k).lower(): v for k, v in params.items()}


def _opt_norm(text: str | None) -> str | None:
    return None if text is None else _normalize_escapes(text)


def _value_eq(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or _normalize_escapes(a).lower() == _normalize_escapes(b).lower()


def _norm_headers(headers: dict[str, str]) -> dict[str, str]:
    return {_normalize_escapes(k).lower(): _normalize_escapes(v).lower() for k, v in headers.items()}


_VISUAL_SEPARATORS = str.maketrans("", "", "-.()")


@dataclass(slots=True, eq=False)
class TelUri:
    """A ``tel:`` URI (RFC 3966): the number as written plus lower-cased parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    scheme = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"TelUri({str(self)!r})"

    def _key(self) -> tuple[str, frozenset[tuple[str, str | None]]]:
        number = self.number.translate(_VISUAL_SEPARATORS).lower()
        params = frozenset((k, None if v is None else v.lower()) for k, v in self.params.items())
        return number, params

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelUri):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other URI scheme (``mailto:``, ``http:``, ``urn:``, ...), kept verbatim."""

    raw: str

    @property
    def scheme(self) -> str:
        return self.raw.partition(":")[0].lower()

    def __str__(self) -> str:
        return self.raw


Uri: TypeAlias = SipUri | TelUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse a URI; raise ``BadRequest("Bad URI: ...")`` if it is malformed."""
    m = _SIP_RE.fullmatch(text)
    if m is not None:
        if "%" in text and _BAD_ESCAPE_RE.search(text):
            raise BadRequest(f"Bad URI: bad escape in {text!r}")
        host = m.group("host")
        if host[0] == "[":
            _check_ipv6(host, text)
        port_text = m.group("port")
        port = None
        if port_text is not None:
            port = int(port_text)
            if port > 65535:
                raise BadRequest(f"Bad URI: bad port in {text!r}")
        params_text = m.group("params")
        headers_text = m.group("headers")
        headers: dict[str, str] = {}
        if headers_text:
            for item in headers_text.split("&"):
                name, _, value = item.partition("=")
                headers[name] = value
        return SipUri(
            m.group("scheme").lower(),
            m.group("user"),
            m.group("password"),
            host,
            port,
            _parse_uri_params(params_text) if params_text else {},
            headers,
        )
    scheme = text[:4].lower()
    if scheme.startswith("sip"):
        if scheme == "sip:" or text[:5].lower() == "sips:":
            raise BadRequest(f"Bad URI: {text!r}")
    elif scheme == "tel:":
        m = _TEL_RE.fullmatch(text)
        if m is None or _BAD_ESCAPE_RE.search(text):
            raise BadRequest(f"Bad URI: {text!r}")
        params_text = m.group("params")
        return TelUri(m.group("number"), _parse_uri_params(params_text) if params_text else {})
    if _ABSOLUTE_RE.fullmatch(text) is None:
        raise BadRequest(f"Bad URI: {text!r}")
    return AbsoluteUri(text)
