"""SIP messages (RFC 3261 §7): parse, inspect, build and serialise.

The parser is deliberately lazy: it splits the start line and header lines and
leaves header values as text. Structured views (``vias``, ``cseq``, ``from_``,
...) are parsed on first use and cached against the raw value they came from,
so a message that is only routed by its Via and CSeq never pays for the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TypeAlias

from .errors import BadRequest, SipError
from .headers import CSeq, NameAddr, Via, parse_cseq, parse_name_addr, parse_vias, split_list
from .uri import AbsoluteUri, SipUri, TelUri, parse_uri

SIP_VERSION = "SIP/2.0"
MAX_HEAD = 65536
MAX_BODY = 1 << 20

_KNOWN = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length", "Content-Type",
    "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity", "Identity-Info",
    "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version", "Organization", "Path",
    "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server", "Session-Expires",
    "Subject", "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent",
    "Via", "Warning", "WWW-Authenticate",
]  # fmt: skip
_COMPACT = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event", "r": "Refer-To",
    "s": "Subject", "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires", "y": "Identity",
}  # fmt: skip
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN}
_CANONICAL.update(_COMPACT)
# names exactly as phones usually write them -> (lookup key, canonical name): skips lower() and the token check
_FAST: dict[str, tuple[str, str]] = {name: (name.lower(), name) for name in _KNOWN}
_FAST.update({short: (long.lower(), long) for short, long in _COMPACT.items()})
_FAST.update({"Call-Id": ("call-id", "Call-ID"), "Cseq": ("cseq", "CSeq"), "CSEQ": ("cseq", "CSeq")})
# headers that may appear once only (RFC 3261 §7.3.1, RFC 4475 §3.3.8-9)
_SINGLE = frozenset({"call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type"})

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(r"\r?\n")
_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\S*)[ \t]*\r?$")


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name; compact forms are expanded."""
    return _CANONICAL.get(name.lower(), name)


_KEYS: dict[str, str] = {}  # memo of lookup keys for names the code asks for (a bounded set)


def _key(name: str) -> str:
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = _CANONICAL.get(name.lower(), name).lower()
    return key


class Headers:
    """Ordered header lines: (name, value) pairs with case-insensitive lookup."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        # each item: [lookup key, name as it will be written, raw value]
        self._items: list[tuple[str, str, str]] = []
        if items:
            for name, value in items:
                self.add(name, value)

    def get(self, name: str) -> str | None:
        key = _key(name)
        for k, _, value in self._items:
            if k == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        key = _key(name)
        return [value for k, _, value in self._items if k == key]

    def get_list(self, name: str) -> list[str]:
        """Every comma-separated value of every line named ``name``."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(split_list(value))
        return out

    def add(self, name: str, value: str) -> None:
        canon = canonical_name(name)
        self._items.append((canon.lower(), canon, value))

    def prepend(self, name: str, value: str) -> None:
        """Insert above the first line of the same name (or at the top)."""
        canon = canonical_name(name)
        key = canon.lower()
        for i, item in enumerate(self._items):
            if item[0] == key:
                self._items.insert(i, (key, canon, value))
                return
        self._items.insert(0, (key, canon, value))

    def set(self, name: str, value: str) -> None:
        """Replace every line named ``name`` by one line (kept at the first one's place)."""
        canon = canonical_name(name)
        key = canon.lower()
        for i, item in enumerate(self._items):
            if item[0] == key:
                self._items[i] = (key, canon, value)
                self._items[i + 1 :] = [it for it in self._items[i + 1 :] if it[0] != key]
                return
        self._items.append((key, canon, value))

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first line named ``name`` (e.g. the top Via line), or add one."""
        canon = canonical_name(name)
        key = canon.lower()
        for i, item in enumerate(self._items):
            if item[0] == key:
                self._items[i] = (key, item[1], value)
                return
        self._items.append((key, canon, value))

    def remove(self, name: str) -> int:
        key = _key(name)
        before = len(self._items)
        self._items = [it for it in self._items if it[0] != key]
        return before - len(self._items)

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def _serialise(self, parts: list[str]) -> None:
        for _, name, value in self._items:
            parts.append(f"{name}: {value}\r\n")

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]]) -> Headers:
        h = cls()
        h._items = items
        return h


class _Message:
    """What requests and responses share: headers, body and parsed views."""

    __slots__ = ("_cache", "body", "headers", "version")

    headers: Headers
    body: bytes
    version: str
    _cache: dict[str, tuple[str, object]]

    def _parsed(self, name: str, parse: object) -> object:
        raw = self.headers.get(name)
        if raw is None:
            raise BadRequest(f"Missing {name}")
        cache: dict[str, tuple[str, object]] = self._cache
        hit = cache.get(name)
        if hit is not None and hit[0] is raw:
            return hit[1]
        value = parse(raw)  # type: ignore[operator]
        cache[name] = (raw, value)
        return value

    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise BadRequest("Missing Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        result = self._parsed("CSeq", parse_cseq)
        assert isinstance(result, CSeq)
        return result

    @property
    def vias(self) -> list[Via]:
        raw = self.headers.get_all("Via")
        if not raw:
            raise BadRequest("Missing Via")
        key = "\n".join(raw)
        hit = self._cache.get("Via")
        if hit is not None and hit[0] == key:
            return hit[1]  # type: ignore[return-value]
        vias = [v for line in raw for v in parse_vias(line)]
        self._cache["Via"] = (key, vias)
        return vias

    @property
    def top_via(self) -> Via:
        return self.vias[0]

    @property
    def from_(self) -> NameAddr:
        result = self._parsed("From", parse_name_addr)
        assert isinstance(result, NameAddr)
        return result

    @property
    def to(self) -> NameAddr:
        result = self._parsed("To", parse_name_addr)
        assert isinstance(result, NameAddr)
        return result

    @property
    def max_forwards(self) -> int | None:
        raw = self.headers.get("Max-Forwards")
        if raw is None:
            return None
        raw = raw.strip()
        digits = raw.lstrip("0") or "0"  # leading zeros are legal (RFC 4475 §3.1.1.1)
        if not (raw.isascii() and raw.isdigit()) or len(digits) > 3 or int(digits) > 255:
            raise BadRequest("Bad Max-Forwards")
        return int(digits)

    def _start_line(self) -> str:
        raise NotImplementedError  # abstract; Request and Response define it

    def to_bytes(self) -> bytes:
        """Serialise, setting Content-Length to the body's length."""
        self.headers.set("Content-Length", str(len(self.body)))
        parts = [self._start_line()]
        self.headers._serialise(parts)
        parts.append("\r\n")
        head = "".join(parts).encode("utf-8", "surrogateescape")
        return head + self.body if self.body else head


class Request(_Message):
    """A SIP request; ``uri`` is the Request-URI as text."""

    __slots__ = ("_uri", "method", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.version = version
        self._cache = {}
        self._uri: tuple[str, SipUri | TelUri | AbsoluteUri] | None = None

    @property
    def request_uri(self) -> SipUri | TelUri | AbsoluteUri:
        if self._uri is not None and self._uri[0] is self.uri:
            return self._uri[1]
        parsed = parse_uri(self.uri)
        self._uri = (self.uri, parsed)
        return parsed

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}\r\n"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(_Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        self.status = status
        self.reason = REASONS.get(status, "Unknown") if reason is None else reason
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.version = version
        self._cache = {}

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}\r\n"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


Message: TypeAlias = Request | Response


def parse_message(data: bytes) -> Message:
    """Parse one whole message (a datagram, or a frame from :class:`StreamFramer`)."""
    start = 0
    while data.startswith(b"\r\n", start):  # §7.5: CRLFs before the start line are ignored
        start += 2
    m = _HEADER_END.search(data, start)
    if m is None:
        # a message with no body and no blank line is tolerated on datagrams
        head_bytes, body = data[start:].rstrip(b"\r\n"), b""
    else:
        head_bytes, body = data[start : m.start()], data[m.end() :]
    if len(head_bytes) > MAX_HEAD:
        raise SipError(513, "Message Too Large")
    if not head_bytes:
        raise BadRequest("Empty message")
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        head = head_bytes.decode("utf-8", "surrogateescape")
    lines = _LINE_SPLIT.split(head)
    first = lines[0]

    items: list[tuple[str, str, str]] = []
    singles: set[str] = set()
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # folded continuation (LWS)
            if not items:
                raise BadRequest("Continuation line before first header")
            key, name, value = items[-1]
            items[-1] = (key, name, f"{value} {line.strip()}" if value else line.strip())
            continue
        colon = line.find(":")
        if colon <= 0:
            raise BadRequest(f"Malformed header line: {line[:40]!r}")
        raw_name = line[:colon]
        fast = _FAST.get(raw_name)
        if fast is None:
            raw_name = raw_name.rstrip(" \t")
            if not _TOKEN.match(raw_name):
                raise BadRequest(f"Malformed header name: {raw_name[:40]!r}")
            canon = _CANONICAL.get(raw_name.lower(), raw_name)
            fast = (canon.lower(), canon)
        key = fast[0]
        if key in _SINGLE:
            if key in singles:
                raise BadRequest(f"Duplicate {fast[1]} header")
            singles.add(key)
        items.append((key, fast[1], line[colon + 1 :].strip(" \t")))
    headers = Headers._from_parsed(items)

    cl = headers.get("Content-Length")
    if cl is not None:
        if not (cl.isascii() and cl.isdigit()) or len(cl) > 10:
            raise BadRequest("Bad Content-Length")
        length = int(cl)
        if length > len(body):
            raise BadRequest("Content-Length larger than body")
        body = body[:length]

    if first.startswith("SIP/"):
        parts = first.split(" ", 2)
        if len(parts) < 2 or len(parts[1]) != 3 or not parts[1].isdigit():
            raise BadRequest("Malformed status line")
        if parts[0].upper() != SIP_VERSION:
            raise BadRequest("Unsupported SIP version in response")
        status = int(parts[1])
        if not 100 <= status <= 699:
            raise BadRequest("Status code out of range")
        return Response(status, parts[2] if len(parts) == 3 else "", headers, body, SIP_VERSION)

    parts = first.split(" ")
    if len(parts) != 3 or not parts[1]:
        raise BadRequest("Malformed request line")
    method, uri, version = parts
    if not _TOKEN.match(method):
        raise BadRequest("Malformed method")
    if version.upper() != SIP_VERSION:
        if version.upper().startswith("SIP/"):
            raise SipError(505, "Version Not Supported")
        raise BadRequest("Malformed request line")
    return Request(method, uri, headers, body, SIP_VERSION)


class StreamFramer:
    """Cuts a TCP/TLS byte stream into messages by Content-Length (§18.3)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete messages now available.

        Raises :class:`BadRequest` when the stream cannot be framed (missing or
        bad Content-Length, oversized message); the connection must then close.
        """
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while True:
            # keep-alive CRLFs (RFC 5626 §3.5.1) and CRLFs between messages
            skip = 0
            while buf[skip : skip + 2] == b"\r\n":
                skip += 2
            if skip:
                del buf[:skip]
            m = _HEADER_END.search(buf)
            if m is None:
                if len(buf) > MAX_HEAD:
                    raise BadRequest("Header section too large")
                return out
            cl = _CONTENT_LENGTH.search(buf, 0, m.end())
            if cl is None:
                raise BadRequest("Missing Content-Length on stream transport")
            digits = cl.group(1)
            if not (digits.isascii() and digits.isdigit()) or len(digits) > 10:
                raise BadRequest("Bad Content-Length")
            if _CONTENT_LENGTH.search(buf, cl.end(), m.end()) is not None:
                raise BadRequest("Duplicate Content-Length header")
            length = int(digits)
            if length > MAX_BODY:
                raise SipError(513, "Message Too Large")
            end = m.end() + length
            if len(buf) < end:
                return out
            out.append(bytes(buf[:end]))
            del buf[:end]


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
) -> Response:
    """Build a response to ``request`` per RFC 3261 §8.2.6.

    Via, From, Call-ID and CSeq are copied; To gets ``to_tag`` unless it already
    has a tag (or the response is 100 Trying).
    """
    add_tag = bool(to_tag) and status != 100
    if add_tag:
        try:
            add_tag = request.to.tag is None
        except SipError:
            add_tag = False
    items: list[tuple[str, str, str]] = []
    for key, name, value in request.headers._items:
        if key in ("via", "from", "call-id", "cseq"):
            items.append((key, name, value))
        elif key == "to":
            items.append((key, name, f"{value};tag={to_tag}" if add_tag else value))
    resp = Response(status, reason, Headers._from_parsed(items))
    via = request._cache.get("Via")
    if via is not None:
        resp._cache["Via"] = via  # same Via lines: share the parsed view
    return resp
