"""Structured SIP header values: CSeq, Via, name-addr (From/To/Contact/Route), parameters.

Parsers take one header value as received (line folding already undone) and raise
``BadRequest`` on malformed input. Parameter names are lower-cased (they are
case-insensitive, RFC 3261 §7.3.1); values are kept verbatim, quotes included, and
unknown parameters are kept. Every value serialises back with ``str()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from softswitch.sip.errors import BadRequest
from softswitch.sip.uri import HOST, Uri, format_params, parse_uri

__all__ = [
    "CSeq",
    "NameAddr",
    "Via",
    "format_params",
    "parse_contacts",
    "parse_cseq",
    "parse_name_addr",
    "parse_params",
    "parse_vias",
    "quote_string",
    "split_list",
    "unquote_string",
]

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
# gen-value = token / host / quoted-string; unquoted values are accepted liberally
# (anything but separators, quotes and whitespace), which covers bare IPv6 addresses.
_VALUE = rf'{_QUOTED}|[^\s;,"<>=]+'
_PARAM_RE = re.compile(rf"\s*;\s*({_TOKEN})(?:\s*(=)\s*({_VALUE})?)?", re.ASCII | re.DOTALL)
_PARAMS_RE = re.compile(rf"(?:\s*;\s*{_TOKEN}(?:\s*=\s*(?:{_VALUE})?)?)*\s*", re.ASCII | re.DOTALL)
_TOKEN_RE = re.compile(_TOKEN, re.ASCII)
_QUOTED_RE = re.compile(_QUOTED, re.DOTALL)
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_LIST_SEP_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|<[^>]*>?|,', re.DOTALL)
_VIA_RE = re.compile(
    rf"\s*({_TOKEN})\s*/\s*({_TOKEN})\s*/\s*({_TOKEN})\s+"
    rf"({HOST})(?:\s*:\s*([0-9]{{1,5}}))?"
    r"(\s*;.*)?\s*",
    re.ASCII | re.DOTALL,
)
_QVALUE_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?", re.ASCII)

_MAX_UINT32 = 0xFFFFFFFF


def _parse_uint(text: str, limit: int) -> int | None:
    """``text`` as an int if it is ASCII digits with value <= limit, else None.

    Leading zeros are allowed; the length check keeps int() away from huge digit strings.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    if len(digits) > len(str(limit)):
        return None
    value = int(digits) if digits else 0
    return value if value <= limit else None


def quote_string(text: str) -> str:
    """Return ``text`` as a quoted-string, escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_string(text: str) -> str:
    """Undo :func:`quote_string`; text that is not a quoted-string is returned unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return _UNESCAPE_RE.sub(r"\1", inner) if "\\" in inner else inner
    return text


def split_list(value: str, *, keep_empty: bool = False) -> list[str]:
    """Split a header value at commas outside quoted strings and ``<...>``; items are stripped.

    Empty items are dropped unless ``keep_empty`` (then ``"a,,b"`` gives ``["a", "", "b"]``).
    """
    if '"' not in value and "<" not in value:
        items = [item.strip() for item in value.split(",")]
    else:
        items = []
        start = 0
        for m in _LIST_SEP_RE.finditer(value):
            if m.group() == ",":
                items.append(value[start : m.start()].strip())
                start = m.end()
        items.append(value[start:].strip())
    return items if keep_empty else [item for item in items if item]


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` (LWS allowed around ``;`` and ``=``) into a dict.

    Names are lower-cased; a parameter without ``=`` maps to None. Raise BadRequest on
    malformed input (empty parameter, unterminated quoted string, stray characters).
    """
    if not text or text.isspace():
        return {}
    if _PARAMS_RE.fullmatch(text) is None:
        raise BadRequest(f"Bad parameters: {text.strip()!r}")
    params: dict[str, str | None] = {}
    for name, eq, value in _PARAM_RE.findall(text):
        params[name.lower()] = value if eq else None
    return params


@dataclass(frozen=True, slots=True)
class CSeq:
    """The CSeq header: sequence number and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    """Parse ``"4711 INVITE"``; the number must fit in 32 bits and the method be a token."""
    parts = value.split()
    if len(parts) != 2:
        raise BadRequest("Bad CSeq")
    seq_text, method = parts
    seq = _parse_uint(seq_text, _MAX_UINT32)
    if seq is None:
        raise BadRequest("Bad CSeq: sequence number is not a 32-bit unsigned integer")
    if _TOKEN_RE.fullmatch(method) is None:
        raise BadRequest("Bad CSeq: method is not a token")
    return CSeq(seq, method)


@dataclass(slots=True)
class Via:
    """One Via value. ``transport`` is upper-case (``"UDP"``), ``host`` keeps IPv6 brackets."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        """The rport value; ``""`` when rport is present without a value (RFC 3581), None if absent."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def _parse_via(text: str) -> Via:
    m = _VIA_RE.fullmatch(text)
    if m is None:
        raise BadRequest(f"Bad Via: {text.strip()!r}")
    name, version, transport, host, port_text, params_text = m.groups()
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise BadRequest(f"Bad Via: bad port in {text.strip()!r}")
    if host[0] == "[" and host.count(":") < 2:
        raise BadRequest(f"Bad Via: bad IPv6 reference in {text.strip()!r}")
    params = parse_params(params_text) if params_text else {}
    rport = params.get("rport")
    if rport is not None and _parse_uint(rport, 65535) is None:
        raise BadRequest(f"Bad Via: bad rport in {text.strip()!r}")
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


def parse_vias(value: str) -> list[Via]:
    """Parse a Via header value, which may hold several comma-separated vias."""
    if "," not in value:
        return [_parse_via(value)]
    items = split_list(value, keep_empty=True)
    if "" in items:
        raise BadRequest("Bad Via: empty value in list")
    return [_parse_via(item) for item in items]


@dataclass(slots=True)
class NameAddr:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route, ...).

    ``display`` is the decoded display name (None when absent). ``str()`` always uses the
    ``<uri>`` form, so URI parameters and header parameters never mix.
    """

    uri: Uri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            self.params["tag"] = value

    @property
    def expires(self) -> int | None:
        """The ``expires`` parameter in seconds (clamped to 2**32-1), or None.

        Raise BadRequest if it is not a number.
        """
        value = self.params.get("expires")
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()):
            raise BadRequest("Bad expires parameter")
        seconds = _parse_uint(value, _MAX_UINT32)
        return _MAX_UINT32 if seconds is None else seconds  # overlarge values are clamped

    @property
    def q(self) -> float:
        """The ``q`` parameter (0 to 1); 1.0 when absent. Raise BadRequest if malformed."""
        value = self.params.get("q")
        if value is None:
            return 1.0
        if _QVALUE_RE.fullmatch(value) is None:
            raise BadRequest("Bad q parameter")
        return float(value)

    def __str__(self) -> str:
        head = f"<{self.uri}>" if self.display is None else f"{quote_string(self.display)} <{self.uri}>"
        return head + format_params(self.params) if self.params else head


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Display" <uri>;params``, ``Display <uri>;params`` or ``uri;params``.

    In the bare addr-spec form the ``;params`` belong to the header, not the URI (§20).
    """
    text = value.strip()
    if not text:
        raise BadRequest("Bad name-addr: empty value")
    display: str | None = None
    if text[0] == '"':
        m = _QUOTED_RE.match(text)
        if m is None:
            raise BadRequest("Bad name-addr: unterminated quoted string")
        display = unquote_string(m.group())
        lt = text.find("<", m.end())
        if lt < 0 or text[m.end() : lt].strip():
            raise BadRequest(f"Bad name-addr: {text!r}")
    else:
        lt = text.find("<")
        if 0 < text.find(";") < lt:
            lt = -1  # addr-spec form: the "<" is inside a header parameter's quoted value
        if lt > 0:
            words = text[:lt].split()
            if words:
                for word in words:
                    if _TOKEN_RE.fullmatch(word) is None:
                        raise BadRequest(f"Bad name-addr: bad display name in {text!r}")
                display = " ".join(words)
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise BadRequest(f"Bad name-addr: missing '>' in {text!r}")
        uri_text = text[lt + 1 : gt].strip()
        rest = text[gt + 1 :]
    else:
        semi = text.find(";")
        uri_text, rest = (text, "") if semi < 0 else (text[:semi].rstrip(), text[semi:])
    if rest and not rest.isspace() and not rest.lstrip().startswith(";"):
        raise BadRequest(f"Bad name-addr: {text!r}")
    return NameAddr(parse_uri(uri_text), display, parse_params(rest) if rest else {})


def parse_contacts(value: str) -> list[NameAddr]:
    """Parse a Contact value holding one or more comma-separated name-addrs (not ``*``)."""
    items = split_list(value, keep_empty=True)
    if "" in items:
        raise BadRequest("Bad Contact: empty value in list")
    return [parse_name_addr(item) for item in items]
