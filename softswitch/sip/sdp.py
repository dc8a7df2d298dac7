"""SDP (RFC 4566) parsing and serialisation, and RFC 3264 offer/answer for G.711 audio.

``parse()`` turns a body into a :class:`SessionDescription`; ``str()`` / ``to_bytes()`` write it back
with CRLF line ends. Attributes are kept as an ordered list of :class:`Attribute` (unknown ones
verbatim), and the ones the B2BUA acts on (rtpmap, fmtp, ptime, maxptime, rtcp, direction) are read
through properties. Malformed SDP raises :class:`SdpError` (400); an offer or answer we cannot use
raises :class:`SdpNotAcceptable` (488, with a Warning header per RFC 3261 §21.4.26).

Offer/answer: :func:`make_offer`, :func:`make_answer` (we answer), :func:`negotiate_answer` (we
offered), and :class:`LocalSession`, which keeps our o= line across re-offers (RFC 3264 §8).
Nothing here reads the clock or draws randomness: session ids are passed in.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from softswitch.sip.errors import SipError

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "SUPPORTED_CODECS",
    "Attribute",
    "CodecInfo",
    "Connection",
    "Direction",
    "LocalSession",
    "MediaDescription",
    "Negotiated",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpNotAcceptable",
    "SessionDescription",
    "Timing",
    "codecs_of",
    "effective_direction",
    "make_answer",
    "make_offer",
    "negotiate_answer",
    "next_version",
    "parse",
    "remote_rtp_address",
]


class SdpError(SipError):
    """Malformed SDP: answered ``400`` (or ``status``) with ``reason`` as the phrase."""

    def __init__(self, reason: str, status: int = 400, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status, reason, headers)


class SdpNotAcceptable(SdpError):
    """Well-formed SDP we cannot use: ``488 Not Acceptable Here`` with a Warning header.

    ``warning`` is the RFC 3261 warn-code: 304 media type not available, 305 incompatible media
    format, 302 incompatible transport protocol. ``detail`` says what was wrong.
    """

    def __init__(self, detail: str, warning: int = 305) -> None:
        super().__init__("Not Acceptable Here", 488, [("Warning", f'{warning} softswitch "{detail}"')])
        self.detail = detail
        self.warning = warning


class Direction(StrEnum):
    """Media direction attribute, seen from the side whose SDP it is."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self is Direction.SENDRECV or self is Direction.SENDONLY

    @property
    def receives(self) -> bool:
        return self is Direction.SENDRECV or self is Direction.RECVONLY

    @staticmethod
    def from_flags(send: bool, receive: bool) -> Direction:
        if send:
            return Direction.SENDRECV if receive else Direction.SENDONLY
        return Direction.RECVONLY if receive else Direction.INACTIVE

    def reverse(self) -> Direction:
        """The same stream seen from the other side (sendonly <-> recvonly)."""
        return Direction.from_flags(self.receives, self.sends)

    def intersect(self, other: Direction) -> Direction:
        return Direction.from_flags(self.sends and other.sends, self.receives and other.receives)


_DIRECTIONS = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Attribute:
    """One ``a=`` line: ``a=name`` (value None) or ``a=name:value`` (value verbatim)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return f"a={self.name}" if self.value is None else f"a={self.name}:{self.value}"


@dataclass(slots=True)
class Origin:
    """The ``o=`` line."""

    username: str
    session_id: int
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return (
            f"o={self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    """A ``c=`` line; ``address`` is verbatim (may carry ``/ttl/count`` for multicast)."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @property
    def host(self) -> str:
        return self.address.partition("/")[0]

    @property
    def is_hold(self) -> bool:
        """RFC 2543 style hold: ``c=IN IP4 0.0.0.0`` (RFC 3264 §8.4)."""
        host = self.host
        return host == "0.0.0.0" or host == "::"

    def __str__(self) -> str:
        return f"c={self.nettype} {self.addrtype} {self.address}"


@dataclass(slots=True)
class Timing:
    """A ``t=`` line and the ``r=`` lines after it (kept verbatim)."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


class RtpMap(NamedTuple):
    """A parsed ``a=rtpmap`` value; ``params`` is the encoding parameters (channels for audio)."""

    payload_type: int
    encoding: str
    clock_rate: int
    params: str | None = None

    @property
    def channels(self) -> int:
        return int(self.params) if self.params and self.params.isascii() and self.params.isdigit() else 1


class CodecInfo(NamedTuple):
    """``(payload type, lower-case encoding name, clock rate)``."""

    pt: int
    encoding: str
    clock_rate: int


class RtcpAttr(NamedTuple):
    """RFC 3605 ``a=rtcp:port [IN IP4 address]``."""

    port: int
    address: str | None = None


# RFC 3551 static payload types (audio and video).
# fmt: off
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    pt: RtpMap(pt, name, rate, ch)
    for pt, name, rate, ch in (
        (0, "PCMU", 8000, None), (3, "GSM", 8000, None), (4, "G723", 8000, None), (5, "DVI4", 8000, None),
        (6, "DVI4", 16000, None), (7, "LPC", 8000, None), (8, "PCMA", 8000, None), (9, "G722", 8000, None),
        (10, "L16", 44100, "2"), (11, "L16", 44100, None), (12, "QCELP", 8000, None), (13, "CN", 8000, None),
        (14, "MPA", 90000, None), (15, "G728", 8000, None), (16, "DVI4", 11025, None),
        (17, "DVI4", 22050, None), (18, "G729", 8000, None), (25, "CelB", 90000, None),
        (26, "JPEG", 90000, None), (28, "nv", 90000, None), (31, "H261", 90000, None),
        (32, "MPV", 90000, None), (33, "MP2T", 90000, None), (34, "H263", 90000, None),
    )
}
# fmt: on

# Codecs the media engine can carry: lower-case name -> (static PT, rtpmap encoding, RTP clock rate).
# The RTP clock of G.722 is 8000 although it samples at 16 kHz (RFC 3551 §4.5.2).
SUPPORTED_CODECS: dict[str, tuple[int, str, int]] = {
    "pcmu": (0, "PCMU", 8000),
    "pcma": (8, "PCMA", 8000),
    "g722": (9, "G722", 8000),
}
TELEPHONE_EVENT = "telephone-event"
_TE_CLOCK = 8000
_DEFAULT_PTIME = 20
_RTP_AVP = "RTP/AVP"

_RTPMAP_RE = re.compile(r"([0-9]{1,3}) +([^/\s]+)/([0-9]{1,9})(?:/(\S+))?\s*", re.ASCII)
_FMTP_RE = re.compile(r"([0-9]{1,3}) +(.*)", re.ASCII | re.DOTALL)
_RTCP_RE = re.compile(r"([0-9]{1,5})(?: +(\S+) +(\S+) +(\S+))?\s*", re.ASCII)
_PTIME_RE = re.compile(r"([0-9]{1,6})(?:\.[0-9]*)?\s*", re.ASCII)
_ATTR_NAME_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+", re.ASCII)


def _parse_rtpmap(value: str | None) -> RtpMap | None:
    m = _RTPMAP_RE.fullmatch(value or "")
    if m is None or int(m[1]) > 127:
        return None
    return RtpMap(int(m[1]), m[2], int(m[3]), m[4])


def _parse_fmtp(value: str | None) -> tuple[int, str] | None:
    m = _FMTP_RE.fullmatch(value or "")
    if m is None or int(m[1]) > 127:
        return None
    return int(m[1]), m[2]


def _parse_ptime(value: str | None) -> int | None:
    m = _PTIME_RE.fullmatch(value or "")
    return int(m[1]) if m else None


def _parse_rtcp(value: str | None) -> RtcpAttr | None:
    m = _RTCP_RE.fullmatch(value or "")
    if m is None or int(m[1]) > 65535:
        return None
    return RtcpAttr(int(m[1]), m[4])


class _Attributes:
    """Attribute accessors shared by the session and media levels (names match case-insensitively)."""

    __slots__ = ()
    attributes: list[Attribute]

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name`` line ("" for a flag attribute), None when absent."""
        name = name.lower()
        for a in self.attributes:
            if a.name.lower() == name:
                return "" if a.value is None else a.value
        return None

    def attribute_values(self, name: str) -> list[str | None]:
        name = name.lower()
        return [a.value for a in self.attributes if a.name.lower() == name]

    def has_attribute(self, name: str) -> bool:
        name = name.lower()
        return any(a.name.lower() == name for a in self.attributes)

    def remove_attribute(self, name: str) -> int:
        name = name.lower()
        before = len(self.attributes)
        self.attributes[:] = [a for a in self.attributes if a.name.lower() != name]
        return before - len(self.attributes)

    def set_attribute(self, name: str, value: str | None = None) -> None:
        """Replace every ``a=name`` line by one (at the first one's place, else at the end)."""
        lname = name.lower()
        new = Attribute(name, value)
        out: list[Attribute] = []
        placed = False
        for a in self.attributes:
            if a.name.lower() == lname:
                if not placed:
                    out.append(new)
                    placed = True
            else:
                out.append(a)
        if not placed:
            out.append(new)
        self.attributes[:] = out

    @property
    def direction(self) -> Direction | None:
        """The direction attribute at this level (first one wins), None when absent."""
        for a in self.attributes:
            if a.value is None and a.name.lower() in _DIRECTIONS:
                return Direction(a.name.lower())
        return None

    @direction.setter
    def direction(self, value: Direction | None) -> None:
        kept = [a for a in self.attributes if not (a.value is None and a.name.lower() in _DIRECTIONS)]
        if value is not None:
            kept.append(Attribute(Direction(value).value))
        self.attributes[:] = kept


@dataclass(slots=True)
class MediaDescription(_Attributes):
    """One media section (``m=`` line and what follows it).

    ``formats`` holds the payload types of RTP media; media with another proto (``udptl``,
    ``TCP/BFCP`` …) keep their format tokens in ``other_formats`` instead.
    """

    media: str
    port: int
    proto: str = _RTP_AVP
    formats: list[int] = field(default_factory=list)
    port_count: int | None = None
    other_formats: list[str] = field(default_factory=list)
    title: str | None = None
    connection: Connection | None = None
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        out: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            rm = _parse_rtpmap(value)
            if rm is not None:
                out.setdefault(rm.payload_type, rm)
        return out

    @property
    def fmtps(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for value in self.attribute_values("fmtp"):
            fm = _parse_fmtp(value)
            if fm is not None:
                out.setdefault(fm[0], fm[1])
        return out

    @property
    def ptime(self) -> int | None:
        return _parse_ptime(self.attribute("ptime"))

    @property
    def maxptime(self) -> int | None:
        return _parse_ptime(self.attribute("maxptime"))

    @property
    def rtcp(self) -> RtcpAttr | None:
        return _parse_rtcp(self.attribute("rtcp"))

    @property
    def rtcp_mux(self) -> bool:
        return self.has_attribute("rtcp-mux")

    def _lines(self, out: list[str]) -> None:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        fmts = [str(pt) for pt in self.formats] if self.is_rtp else self.other_formats
        out.append(" ".join([f"m={self.media}", port, self.proto, *fmts]))
        if self.title is not None:
            out.append(f"i={self.title}")
        if self.connection is not None:
            out.append(str(self.connection))
        out.extend(f"b={t}:{v}" for t, v in self.bandwidths)
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(map(str, self.attributes))


@dataclass(slots=True)
class SessionDescription(_Attributes):
    """A whole SDP body. ``str()`` serialises it with CRLF line ends."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: list[Timing] = field(default_factory=lambda: [Timing()])
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    zone: str | None = None
    key: str | None = None

    def to_str(self) -> str:
        out = [f"v={self.version}", str(self.origin), f"s={self.session_name}"]
        if self.info is not None:
            out.append(f"i={self.info}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out.extend(f"e={e}" for e in self.emails)
        out.extend(f"p={p}" for p in self.phones)
        if self.connection is not None:
            out.append(str(self.connection))
        out.extend(f"b={t}:{v}" for t, v in self.bandwidths)
        for t in self.timing:
            out.append(f"t={t.start} {t.stop}")
            out.extend(f"r={r}" for r in t.repeats)
        if self.zone is not None:
            out.append(f"z={self.zone}")
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(map(str, self.attributes))
        for m in self.media:
            m._lines(out)
        out.append("")
        return "\r\n".join(out)

    __str__ = to_str

    def to_bytes(self) -> bytes:
        return self.to_str().encode("utf-8", "surrogateescape")

    def copy(self) -> SessionDescription:
        return copy.deepcopy(self)


# --- parsing ------------------------------------------------------------------------------------

_MAX_DIGITS = 20  # keeps int() away from absurd digit strings


def _uint(text: str, what: str, lineno: int, limit: int | None = None) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
        raise SdpError(f"Bad SDP: malformed {what} (line {lineno})")
    n = int(text)
    if limit is not None and n > limit:
        raise SdpError(f"Bad SDP: {what} out of range (line {lineno})")
    return n


def _parse_connection(value: str, lineno: int) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"Bad SDP: malformed c= line (line {lineno})")
    return Connection(parts[2], parts[0], parts[1])


def _parse_bandwidth(value: str, lineno: int) -> tuple[str, int]:
    bwtype, sep, bw = value.partition(":")
    if not sep or not _ATTR_NAME_RE.fullmatch(bwtype):
        raise SdpError(f"Bad SDP: malformed b= line (line {lineno})")
    return bwtype, _uint(bw.strip(), "b= bandwidth", lineno)


def _parse_media(value: str, lineno: int) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"Bad SDP: malformed m= line (line {lineno})")
    media, port_text, proto = parts[0], parts[1], parts[2]
    port_s, slash, count_s = port_text.partition("/")
    port = _uint(port_s, "m= port", lineno, 65535)
    count = _uint(count_s, "m= port count", lineno) if slash else None
    md = MediaDescription(media, port, proto, port_count=count)
    if md.is_rtp:
        md.formats = [_uint(f, "m= payload type", lineno, 127) for f in parts[3:]]
    else:
        md.other_formats = parts[3:]
    return md


def _check_media_attributes(md: MediaDescription, lineno: int) -> None:
    """Attributes the offer/answer code acts on must be well-formed in RTP media."""
    for a in md.attributes:
        name = a.name.lower()
        if name == "rtpmap":
            ok = _parse_rtpmap(a.value) is not None
        elif name == "fmtp":
            ok = _parse_fmtp(a.value) is not None
        elif name in ("ptime", "maxptime"):
            ok = _parse_ptime(a.value) is not None
        elif name == "rtcp":
            ok = _parse_rtcp(a.value) is not None
        else:
            continue
        if not ok:
            raise SdpError(f"Bad SDP: malformed a={name} in the m= section ending at line {lineno}")


_SESSION_ONLY = frozenset("vosuepzrt")


def parse(data: bytes | str) -> SessionDescription:
    """Parse an SDP body (CRLF or bare LF line ends). Raises :class:`SdpError` when malformed.

    Liberal where real phones are sloppy: blank lines and missing ``s=``/``t=`` are accepted,
    fields may be separated by several spaces. Non-UTF-8 bytes survive a round trip.
    """
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes | bytearray) else data
    seen_v = False
    sdp: SessionDescription | None = None
    md: MediaDescription | None = None
    timing: list[Timing] = []
    lineno = 0
    for raw in text.split("\n"):
        lineno += 1
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line or line.isspace():
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"Bad SDP: malformed line {lineno}")
        kind, value = line[0], line[2:]
        if sdp is None:
            # v= must come first, then o=; everything else hangs off the SessionDescription.
            if not seen_v:
                if kind != "v":
                    raise SdpError("Bad SDP: does not start with v=")
                if value.strip() != "0":
                    raise SdpError("Bad SDP: unsupported version")
                seen_v = True
                continue
            if kind != "o":
                raise SdpError(f"Bad SDP: o= line expected (line {lineno})")
            parts = value.split()
            if len(parts) != 6:
                raise SdpError(f"Bad SDP: malformed o= line (line {lineno})")
            origin = Origin(
                parts[0],
                _uint(parts[1], "o= sess-id", lineno),
                _uint(parts[2], "o= sess-version", lineno),
                parts[3],
                parts[4],
                parts[5],
            )
            sdp = SessionDescription(origin, session_name="-", timing=timing)
            continue
        if kind == "a":
            name, colon, aval = value.partition(":")
            name = name.strip()
            if not _ATTR_NAME_RE.fullmatch(name):
                raise SdpError(f"Bad SDP: malformed a= line (line {lineno})")
            (md if md is not None else sdp).attributes.append(Attribute(name, aval if colon else None))
        elif kind == "m":
            if md is not None and md.is_rtp:
                _check_media_attributes(md, lineno - 1)
            md = _parse_media(value, lineno)
            sdp.media.append(md)
        elif kind == "c":
            target: SessionDescription | MediaDescription = md if md is not None else sdp
            if target.connection is not None:
                raise SdpError(f"Bad SDP: more than one c= line (line {lineno})")
            target.connection = _parse_connection(value, lineno)
        elif kind == "b":
            (md if md is not None else sdp).bandwidths.append(_parse_bandwidth(value, lineno))
        elif md is not None and kind in _SESSION_ONLY:
            raise SdpError(f"Bad SDP: {kind}= line inside a media description (line {lineno})")
        elif kind == "i":
            if md is not None:
                md.title = value
            else:
                sdp.info = value
        elif kind == "k":
            if md is not None:
                md.key = value
            else:
                sdp.key = value
        elif kind == "s":
            sdp.session_name = value
        elif kind == "t":
            parts = value.split()
            if len(parts) != 2:
                raise SdpError(f"Bad SDP: malformed t= line (line {lineno})")
            timing.append(Timing(_uint(parts[0], "t= start", lineno), _uint(parts[1], "t= stop", lineno)))
        elif kind == "r":
            if not timing:
                raise SdpError(f"Bad SDP: r= line without t= (line {lineno})")
            timing[-1].repeats.append(value)
        elif kind == "u":
            sdp.uri = value
        elif kind == "e":
            sdp.emails.append(value)
        elif kind == "p":
            sdp.phones.append(value)
        elif kind == "z":
            sdp.zone = value
        else:
            raise SdpError(f"Bad SDP: unexpected {'v=/o=' if kind in 'vo' else 'line type'} (line {lineno})")
    if sdp is None:
        raise SdpError("Bad SDP: missing o= line" if seen_v else "Bad SDP: empty body")
    if md is not None and md.is_rtp:
        _check_media_attributes(md, lineno)
    if not timing:
        timing.append(Timing())
    return sdp


# --- helpers ------------------------------------------------------------------------------------


def _rtpmaps_of(media: MediaDescription) -> list[RtpMap]:
    """One RtpMap per payload type in ``media.formats`` (rtpmap, else the RFC 3551 static table)."""
    maps = media.rtpmaps if media.attributes else {}
    out: list[RtpMap] = []
    for pt in media.formats:
        rm = maps.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
        if rm is not None:
            out.append(rm if rm.payload_type == pt else rm._replace(payload_type=pt))
    return out


def codecs_of(media: MediaDescription) -> list[CodecInfo]:
    """``(pt, lower-case encoding, clock rate)`` for each payload type of ``media`` in m= line order.

    Payload types without an rtpmap use the RFC 3551 static table (0 PCMU, 8 PCMA, 13 CN …); unknown
    dynamic ones without an rtpmap are left out.
    """
    return [CodecInfo(rm.payload_type, rm.encoding.lower(), rm.clock_rate) for rm in _rtpmaps_of(media)]


def _media_at(sdp: SessionDescription, media_index: int) -> MediaDescription:
    if not 0 <= media_index < len(sdp.media):
        raise SdpError(f"Bad SDP: no m= line #{media_index}")
    return sdp.media[media_index]


def _connection_of(sdp: SessionDescription, media: MediaDescription) -> Connection:
    conn = media.connection or sdp.connection
    if conn is None:
        raise SdpError("Bad SDP: no c= line for a media stream")
    return conn


def remote_rtp_address(sdp: SessionDescription, media_index: int = 0) -> tuple[str, int]:
    """Where to send RTP for stream ``media_index``: media-level c= wins over session level.

    Port 0 means the stream is rejected/disabled; host ``0.0.0.0`` is an RFC 2543 style hold.
    """
    media = _media_at(sdp, media_index)
    return _connection_of(sdp, media).host, media.port


def effective_direction(sdp: SessionDescription, media: MediaDescription) -> Direction:
    """Media-level direction, else session-level, else sendrecv (RFC 4566 §6)."""
    return media.direction or sdp.direction or Direction.SENDRECV


def next_version(sdp: SessionDescription) -> SessionDescription:
    """A copy of ``sdp`` with the o= sess-version incremented (RFC 3264 §8)."""
    out = sdp.copy()
    out.origin.session_version += 1
    return out


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The outcome of an offer/answer exchange for the audio stream, from our side.

    ``payload_type`` is the PT to send ``codec`` with (and expect it back with); ``direction`` is
    ours (``sendonly`` = we send, they do not); ``remote`` and ``rtcp`` are where to send RTP/RTCP.
    """

    codec: str
    payload_type: int
    telephone_event_pt: int | None
    remote: tuple[str, int]
    direction: Direction
    ptime: int = _DEFAULT_PTIME
    clock_rate: int = 8000
    media_index: int = 0
    rtcp: tuple[str, int] | None = None

    @property
    def sending(self) -> bool:
        return self.direction.sends

    @property
    def receiving(self) -> bool:
        return self.direction.receives


def _supported_codec(rm: RtpMap, names: Iterable[str]) -> str | None:
    """Our lower-case codec name for ``rm`` if it is one of ``names``, else None."""
    enc = rm.encoding.lower()
    for name in names:
        spec = SUPPORTED_CODECS.get(name)
        if spec is not None and enc == spec[1].lower() and rm.clock_rate == spec[2] and rm.channels == 1:
            return name
    return None


def _choose(maps: Iterable[RtpMap], names: Sequence[str]) -> tuple[RtpMap, str] | None:
    """The first of ``maps`` (offer order) that is one of our codec ``names``."""
    for rm in maps:
        name = _supported_codec(rm, names)
        if name is not None:
            return rm, name
    return None


def _telephone_event_pt(maps: Sequence[RtpMap]) -> int | None:
    for rm in maps:
        if rm.encoding.lower() == TELEPHONE_EVENT and rm.clock_rate == _TE_CLOCK:
            return rm.payload_type
    return None


def _negotiated(
    name: str,
    rm: RtpMap,
    te_pt: int | None,
    conn: Connection,
    remote: MediaDescription,
    ours: Direction,
    index: int,
) -> Negotiated:
    """What was agreed, given the remote side's accepted m= section and its connection."""
    host = conn.host
    attr = remote.rtcp
    rtcp = (host, remote.port + 1) if attr is None else (attr.address or host, attr.port)
    ptime = remote.ptime or _DEFAULT_PTIME
    return Negotiated(
        name, rm.payload_type, te_pt, (host, remote.port), ours, ptime, rm.clock_rate, index, rtcp
    )


def _audio_media(
    port: int,
    codecs: Sequence[tuple[int, str, int]],
    telephone_event_pt: int | None,
    direction: Direction,
    ptime: int,
) -> MediaDescription:
    md = MediaDescription("audio", port, _RTP_AVP, [pt for pt, _, _ in codecs])
    attrs = md.attributes
    attrs.extend(Attribute("rtpmap", f"{pt} {enc}/{rate}") for pt, enc, rate in codecs)
    if telephone_event_pt is not None:
        md.formats.append(telephone_event_pt)
        attrs.append(Attribute("rtpmap", f"{telephone_event_pt} {TELEPHONE_EVENT}/{_TE_CLOCK}"))
        attrs.append(Attribute("fmtp", f"{telephone_event_pt} 0-16"))
    attrs.append(Attribute("ptime", str(ptime)))
    attrs.append(Attribute(Direction(direction).value))
    return md


def _session(address: str, username: str, session_id: int, session_version: int) -> SessionDescription:
    addrtype = _addrtype(address)
    return SessionDescription(
        Origin(username, session_id, session_version, "IN", addrtype, address),
        session_name="-",
        connection=Connection(address, "IN", addrtype),
    )


def _codec_specs(codecs: Iterable[str], pts: dict[str, int] | None = None) -> list[tuple[int, str, int]]:
    out: list[tuple[int, str, int]] = []
    for name in codecs:
        spec = SUPPORTED_CODECS.get(name.lower())
        if spec is None:
            raise ValueError(f"unsupported codec {name!r}")
        pt = pts.get(name.lower(), spec[0]) if pts else spec[0]
        out.append((pt, spec[1], spec[2]))
    return out


def make_offer(
    *,
    address: str,
    port: int,
    codecs: Sequence[str] = ("pcmu", "pcma"),
    telephone_event_pt: int | None = 101,
    direction: Direction | str = Direction.SENDRECV,
    session_id: int,
    session_version: int,
    username: str = "softswitch",
    ptime: int = _DEFAULT_PTIME,
) -> SessionDescription:
    """An offer with one RTP/AVP audio stream: ``codecs`` in preference order, then telephone-event."""
    sdp = _session(address, username, session_id, session_version)
    sdp.media.append(
        _audio_media(port, _codec_specs(codecs), telephone_event_pt, Direction(direction), ptime)
    )
    return sdp


def _rejected(media: MediaDescription) -> MediaDescription:
    """The answer's m= line for a stream we decline: same media/proto/formats, port 0 (RFC 3264 §6)."""
    return MediaDescription(
        media.media, 0, media.proto, list(media.formats), other_formats=list(media.other_formats)
    )


def make_answer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    supported: Sequence[str] = ("pcmu", "pcma"),
    telephone_event: bool = True,
    direction: Direction | str = Direction.SENDRECV,
    session_id: int,
    session_version: int,
    username: str = "softswitch",
    ptime: int = _DEFAULT_PTIME,
) -> tuple[SessionDescription, Negotiated]:
    """Answer ``offer`` (RFC 3264 §6): accept the first RTP/AVP audio stream with a codec we support.

    The codec is the first one in the *offer's* order that is in ``supported``, sent with the
    offerer's payload type; telephone-event keeps the offer's PT. Every other m= line is rejected
    with port 0. ``direction`` is what we would like; the answer's is its intersection with the
    reverse of the offer's (an offer with ``c=0.0.0.0`` is one that does not want to receive).
    Raises :class:`SdpNotAcceptable` when no audio stream is usable.
    """
    want = Direction(direction)
    names = [s.lower() for s in supported]
    answer = _session(address, username, session_id, session_version)
    answer.timing = [Timing(t.start, t.stop) for t in offer.timing] or [Timing()]
    negotiated: Negotiated | None = None
    warning, detail = 304, "no audio stream offered"
    for index, om in enumerate(offer.media):
        if negotiated is not None or om.media.lower() != "audio" or om.port == 0:
            answer.media.append(_rejected(om))
            continue
        if om.proto.upper() != _RTP_AVP:
            answer.media.append(_rejected(om))
            if warning == 304:
                warning, detail = 302, f"unsupported transport {om.proto}"
            continue
        maps = _rtpmaps_of(om)
        chosen = _choose(maps, names)
        if chosen is None:
            answer.media.append(_rejected(om))
            warning, detail = 305, "no common audio codec"
            continue
        rm, name = chosen
        te_pt = _telephone_event_pt(maps) if telephone_event else None
        conn = _connection_of(offer, om)
        offered = effective_direction(offer, om)
        if conn.is_hold:
            offered = Direction.from_flags(offered.sends, False)
        ours = want.intersect(offered.reverse())
        answer.media.append(
            _audio_media(port, [(rm.payload_type, rm.encoding, rm.clock_rate)], te_pt, ours, ptime)
        )
        negotiated = _negotiated(name, rm, te_pt, conn, om, ours, index)
    if negotiated is None:
        raise SdpNotAcceptable(detail, warning)
    return answer, negotiated


def negotiate_answer(offer_we_sent: SessionDescription, answer_received: SessionDescription) -> Negotiated:
    """Check an answer to our offer (RFC 3264 §5-6) and say what was agreed for the audio stream.

    The answer must have as many m= lines as the offer, of the same media types (else 400); the
    audio stream must be accepted with a codec we offered (else :class:`SdpNotAcceptable`).
    """
    offer, answer = offer_we_sent, answer_received
    if len(answer.media) != len(offer.media):
        raise SdpError(f"Bad SDP: answer has {len(answer.media)} m= lines, the offer had {len(offer.media)}")
    rejected = False
    for index, (om, am) in enumerate(zip(offer.media, answer.media, strict=True)):
        if om.media.lower() != am.media.lower():
            raise SdpError(f"Bad SDP: answer m= line #{index} is {am.media}, the offer's is {om.media}")
        if om.media.lower() != "audio" or om.port == 0:
            continue
        if am.port == 0:
            rejected = True
            continue
        offered_maps = _rtpmaps_of(om)
        offered_names = [
            n for n in (_supported_codec(rm, SUPPORTED_CODECS) for rm in offered_maps) if n is not None
        ]
        answer_maps = _rtpmaps_of(am)
        chosen = _choose(answer_maps, offered_names)
        if chosen is None:
            raise SdpNotAcceptable("answer has no codec we offered")
        rm, name = chosen
        te_pt = _telephone_event_pt(answer_maps) if _telephone_event_pt(offered_maps) is not None else None
        conn = _connection_of(answer, am)
        answered = effective_direction(answer, am)
        if conn.is_hold:
            answered = Direction.from_flags(answered.sends, False)
        ours = effective_direction(offer, om).intersect(answered.reverse())
        return _negotiated(name, rm, te_pt, conn, am, ours, index)
    raise SdpNotAcceptable("audio stream rejected" if rejected else "no audio stream offered", 304)


class LocalSession:
    """Our side of one SDP session: keeps the o= sess-id and bumps sess-version on change.

    Every SDP we send goes through this object, so the version rises by one exactly when the
    body differs from the previous one (RFC 3264 §8), and re-offers keep the m= line layout of the
    last exchange (declined streams stay as port 0 lines, §8.1). After a negotiation, re-offers
    list the agreed codec first and reuse the agreed telephone-event PT.
    """

    # fmt: off
    __slots__ = (
        "_audio_index", "_last_body", "_layout", "_version", "address", "codecs", "last_sent", "negotiated",
        "port", "ptime", "session_id", "telephone_event_pt", "username",
    )
    # fmt: on

    def __init__(
        self,
        *,
        address: str,
        port: int,
        session_id: int,
        session_version: int | None = None,
        codecs: Sequence[str] = ("pcmu", "pcma"),
        telephone_event_pt: int | None = 101,
        username: str = "softswitch",
        ptime: int = _DEFAULT_PTIME,
    ) -> None:
        self.address = address
        self.port = port
        self.session_id = session_id
        self._version = session_id if session_version is None else session_version
        self.codecs = [c.lower() for c in codecs]
        _codec_specs(self.codecs)  # fail early on unknown names
        self.telephone_event_pt = telephone_event_pt
        self.username = username
        self.ptime = ptime
        self.negotiated: Negotiated | None = None
        self.last_sent: SessionDescription | None = None
        self._last_body: str | None = None
        self._layout: list[MediaDescription] = []
        self._audio_index = 0

    @property
    def version(self) -> int:
        """The sess-version of the last SDP sent (or of the next one, before any was sent)."""
        return self._version

    def _stamp(self, sdp: SessionDescription) -> SessionDescription:
        sdp.origin.session_version = self._version
        body = sdp.to_str()
        if self._last_body is not None and body != self._last_body:
            self._version += 1
            sdp.origin.session_version = self._version
            body = sdp.to_str()
        self._last_body = body
        self.last_sent = sdp
        return sdp

    def offer(self, direction: Direction | str = Direction.SENDRECV) -> SessionDescription:
        """An (re-)offer of our audio stream with ``direction``."""
        names = list(self.codecs)
        pts: dict[str, int] = {}
        neg = self.negotiated
        if neg is not None:
            if neg.codec in names:
                names.remove(neg.codec)
            names.insert(0, neg.codec)
            pts[neg.codec] = neg.payload_type
        te_pt = self.telephone_event_pt
        if neg is not None and neg.telephone_event_pt is not None:
            te_pt = neg.telephone_event_pt
        sdp = _session(self.address, self.username, self.session_id, self._version)
        audio = _audio_media(self.port, _codec_specs(names, pts), te_pt, Direction(direction), self.ptime)
        if self._layout:
            sdp.media = [copy.deepcopy(m) for m in self._layout]
            sdp.media[self._audio_index] = audio
        else:
            sdp.media = [audio]
        return self._stamp(sdp)

    def hold(self, inactive: bool | None = None) -> SessionDescription:
        """A hold re-offer: sendonly, or inactive when the peer already holds us (RFC 6337 §5.3)."""
        if inactive is None:
            inactive = self.negotiated is not None and not self.negotiated.direction.sends
        return self.offer(Direction.INACTIVE if inactive else Direction.SENDONLY)

    def resume(self) -> SessionDescription:
        """A re-offer taking the stream off hold."""
        return self.offer(Direction.SENDRECV)

    def answer(
        self, offer: SessionDescription, direction: Direction | str = Direction.SENDRECV
    ) -> tuple[SessionDescription, Negotiated]:
        """Answer ``offer`` (initial or re-offer) with our o= line; see :func:`make_answer`."""
        te = self.telephone_event_pt is not None
        sdp, neg = make_answer(
            offer,
            address=self.address,
            port=self.port,
            supported=self.codecs,
            telephone_event=te,
            direction=direction,
            session_id=self.session_id,
            session_version=self._version,
            username=self.username,
            ptime=self.ptime,
        )
        self._remember(sdp, neg)
        return self._stamp(sdp), neg

    def accept_answer(self, answer: SessionDescription) -> Negotiated:
        """Check the answer to the last offer we sent; see :func:`negotiate_answer`."""
        if self.last_sent is None:
            raise SdpError("Bad SDP: an answer arrived but no offer was sent")
        neg = negotiate_answer(self.last_sent, answer)
        self._remember(self.last_sent, neg)
        return neg

    def _remember(self, ours: SessionDescription, neg: Negotiated) -> None:
        self.negotiated = neg
        self._audio_index = neg.media_index
        self._layout = [_rejected(m) for m in ours.media]
