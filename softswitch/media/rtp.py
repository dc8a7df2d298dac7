"""RTP and RTCP wire formats (RFC 3550), sequence/timestamp arithmetic and receiver statistics.

Two levels: :func:`parse_header` / :func:`pack_header_into` are the per-packet fast path (plain tuples,
``struct`` on caller-owned buffers, no objects); :class:`RtpPacket` with :func:`parse_rtp` /
:func:`build_rtp` is the complete, validating form for everything else (tests, tools, rare packets).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "HEADER",
    "NTP_UNIX_OFFSET",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "RTP_VERSION",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtpError",
    "RtpPacket",
    "SenderReport",
    "SequenceTracker",
    "SourceDescription",
    "build_bye",
    "build_rr",
    "build_rtp",
    "build_sdes",
    "build_sr",
    "is_rtcp",
    "ntp_from_unix",
    "pack_header_into",
    "parse_header",
    "parse_rtcp",
    "parse_rtp",
    "seq_diff",
    "seq_newer",
    "ts_diff",
    "ts_newer",
]

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_EXT = struct.Struct("!HH")

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01


class RtpError(ValueError):
    """A malformed RTP or RTCP packet, or a value that does not fit its field."""


# --------------------------------------------------------------------------------------------------- RTP


@dataclass(slots=True)
class RtpPacket:
    """A complete RTP packet.

    ``extension`` is ``(profile, data)`` with ``len(data) % 4 == 0``; ``padding`` is the number of padding
    octets including the final count octet (0 = no P bit).
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse and validate an RTP packet; RtpError when malformed."""
    length = len(data)
    if length < 12:
        raise RtpError(f"RTP packet too short ({length} bytes)")
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data, 0)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    pos = 12
    cc = b0 & 0x0F
    if pos + 4 * cc > length:
        raise RtpError(f"RTP packet truncated in its CSRC list ({cc} CSRCs, {length} bytes)")
    csrcs = struct.unpack_from(f"!{cc}I", data, pos) if cc else ()
    pos += 4 * cc
    extension = None
    if b0 & 0x10:
        if pos + 4 > length:
            raise RtpError("RTP packet truncated in its header extension")
        profile, words = _EXT.unpack_from(data, pos)
        pos += 4
        if pos + 4 * words > length:
            raise RtpError(f"RTP header extension of {words} words exceeds the packet")
        extension = (profile, bytes(data[pos : pos + 4 * words]))
        pos += 4 * words
    end = length
    padding = 0
    if b0 & 0x20:
        padding = data[length - 1]
        if padding == 0 or end - padding < pos:
            raise RtpError(f"RTP padding count {padding} is invalid")
        end -= padding
    return RtpPacket(
        b1 & 0x7F, seq, ts, ssrc, bytes(data[pos:end]), bool(b1 & 0x80), tuple(csrcs), extension, padding
    )


def build_rtp(pkt: RtpPacket) -> bytes:
    """Serialise ``pkt``; RtpError when a field is out of range."""
    if not 0 <= pkt.payload_type <= 127:
        raise RtpError(f"payload type {pkt.payload_type} out of range 0..127")
    if len(pkt.csrcs) > 15:
        raise RtpError(f"{len(pkt.csrcs)} CSRCs, at most 15 allowed")
    if not 0 <= pkt.padding <= 255:
        raise RtpError(f"padding {pkt.padding} out of range 0..255")
    b0 = 0x80 | len(pkt.csrcs) | (0x20 if pkt.padding else 0) | (0x10 if pkt.extension is not None else 0)
    try:
        parts = [
            HEADER.pack(
                b0, pkt.payload_type | (0x80 if pkt.marker else 0), pkt.sequence, pkt.timestamp, pkt.ssrc
            )
        ]
        if pkt.csrcs:
            parts.append(struct.pack(f"!{len(pkt.csrcs)}I", *pkt.csrcs))
        if pkt.extension is not None:
            profile, ext = pkt.extension
            if len(ext) % 4:
                raise RtpError(f"header extension length {len(ext)} is not a multiple of 4")
            parts.append(_EXT.pack(profile, len(ext) // 4))
            parts.append(ext)
    except struct.error as exc:
        raise RtpError(f"RTP field out of range: {exc}") from None
    parts.append(pkt.payload)
    if pkt.padding:
        parts.append(bytes(pkt.padding - 1) + bytes((pkt.padding,)))
    return b"".join(parts)


def parse_header(
    buf: bytes | bytearray | memoryview, length: int
) -> tuple[int, bool, int, int, int, int, int] | None:
    """Fast path: ``(pt, marker, seq, ts, ssrc, payload_start, payload_end)`` or None when invalid.

    Looks at the first ``length`` bytes of ``buf`` (e.g. a reused receive buffer); CSRCs and header
    extension are skipped and padding is removed from ``payload_end``.
    """
    if length < 12:
        return None
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(buf, 0)
    if b0 & 0xC0 != 0x80:
        return None
    start = 12
    if b0 & 0x1F:
        start += (b0 & 0x0F) << 2
        if b0 & 0x10:
            if start + 4 > length:
                return None
            start += 4 + (_U16.unpack_from(buf, start + 2)[0] << 2)
        if start > length:
            return None
    end = length
    if b0 & 0x20:
        pad = buf[length - 1]
        end -= pad
        if pad == 0 or end < start:
            return None
    return b1 & 0x7F, b1 > 127, seq, ts, ssrc, start, end


def pack_header_into(
    buf: bytearray | memoryview, pt: int, marker: bool, seq: int, ts: int, ssrc: int, offset: int = 0
) -> None:
    """Write a 12-byte header (no CSRC/extension/padding) at ``offset``; ``seq``/``ts`` are wrapped."""
    HEADER.pack_into(buf, offset, 0x80, (pt | 0x80) if marker else pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """RFC 5761 demultiplexing: True when the second octet is an RTCP packet type (192..223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


# ---------------------------------------------------------------------------------------- wrap helpers


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (RFC 1982 serial arithmetic on 16 bits)."""
    return 0 < ((a - b) & 0xFFFF) < 0x8000


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 32-bit RTP timestamps."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ts_newer(a: int, b: int) -> bool:
    """True when RTP timestamp ``a`` comes after ``b`` (32-bit wrap)."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


# ------------------------------------------------------------------------------------ receiver statistics

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


class SequenceTracker:
    """Per-source reception statistics: RFC 3550 A.1 (sequence validation), A.3 (loss), A.8 (jitter).

    Call :meth:`update` for every packet of the source; ``arrival`` is the local receive time in seconds
    (any monotonic origin). Until ``min_sequential`` packets in sequence have arrived the source is on
    probation and packets are not counted.
    """

    __slots__ = (
        "bad_seq",
        "base_seq",
        "clock_rate",
        "cycles",
        "expected_prior",
        "jitter",
        "max_seq",
        "min_sequential",
        "probation",
        "received",
        "received_prior",
        "started",
        "transit",
    )

    def __init__(self, clock_rate: int = 8000, min_sequential: int = MIN_SEQUENTIAL) -> None:
        self.clock_rate = clock_rate
        self.min_sequential = max(1, min_sequential)
        self.started = False
        self.base_seq = 0
        self.max_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0
        self.probation = 0
        self.transit: int | None = None
        self.jitter = 0.0

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def update_seq(self, seq: int) -> bool:
        """RFC 3550 A.1 ``update_seq``: False while on probation or after a large jump (until confirmed)."""
        if not self.started:
            self.started = True
            self._init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = self.min_sequential
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = self.min_sequential - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                # Two sequential packets after a big jump: the sender restarted, resynchronise.
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet, counted but max_seq unchanged
        self.received += 1
        return True

    def update(self, seq: int, timestamp: int, arrival: float) -> bool:
        """Account one packet (sequence and jitter); returns :meth:`update_seq`'s verdict."""
        valid = self.update_seq(seq)
        if valid:
            arrival_units = int(arrival * self.clock_rate)
            transit = arrival_units - timestamp
            if self.transit is not None:
                d = ((transit - self.transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                self.jitter += (abs(d) - self.jitter) / 16.0
            self.transit = transit
        return valid

    @property
    def extended_max(self) -> int:
        """Highest sequence number received, extended with the wrap count."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self.received else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (negative when duplicates outnumber losses)."""
        return self.expected - self.received

    def report_block(self, ssrc: int, lsr: int = 0, dlsr: int = 0) -> ReportBlock:
        """A reception report for this source (``ssrc``) covering the interval since the previous call."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = (
            0 if expected_interval == 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        )
        cumulative = max(-0x800000, min(0x7FFFFF, self.lost))
        return ReportBlock(
            ssrc, min(fraction, 255), cumulative, self.extended_max & 0xFFFFFFFF, int(self.jitter), lsr, dlsr
        )


# ------------------------------------------------------------------------------------------------ RTCP

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
SDES_CNAME = 1

_RTCP_HEAD = struct.Struct("!BBH")
_SR_BODY = struct.Struct("!IIIIII")  # ssrc, ntp msw, ntp lsw, rtp ts, packet count, octet count
_BLOCK = struct.Struct("!IIIIII")  # ssrc, fraction<<24 | lost, highest seq, jitter, lsr, dlsr


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """RTCP reception report block; ``cumulative_lost`` is signed 24-bit, ``lsr``/``dlsr`` raw 32-bit."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR. ``ntp`` is the raw 64-bit NTP timestamp; see :attr:`ntp_time` and :attr:`lsr`."""

    ssrc: int
    ntp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    @property
    def ntp_time(self) -> float:
        """Seconds since 1900-01-01."""
        return self.ntp / 4294967296.0

    @property
    def lsr(self) -> int:
        """The middle 32 bits of the NTP timestamp, to echo as LSR in reports about this sender."""
        return (self.ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """RTCP SDES: ``chunks`` of ``(ssrc, ((item type, text), ...))``."""

    chunks: tuple[tuple[int, tuple[tuple[int, str], ...]], ...]

    @property
    def cnames(self) -> dict[int, str]:
        return {ssrc: text for ssrc, items in self.chunks for kind, text in items if kind == SDES_CNAME}


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """Any other RTCP packet (APP, feedback, XR...): type, the 5-bit count field and the body after the header."""

    packet_type: int
    count: int
    body: bytes = field(default=b"")


def ntp_from_unix(unix_time: float) -> float:
    """Convert Unix time (``time.time()``) to NTP seconds since 1900."""
    return unix_time + NTP_UNIX_OFFSET


def _rtcp_header(packet_type: int, count: int, body_len: int) -> bytes:
    return _RTCP_HEAD.pack(0x80 | count, packet_type, body_len // 4)  # length = words - 1, header included


def _pack_blocks(reports: tuple[ReportBlock, ...] | list[ReportBlock]) -> bytes:
    if len(reports) > 31:
        raise RtpError(f"{len(reports)} report blocks, at most 31 fit one packet")
    out = bytearray()
    try:
        for r in reports:
            if not 0 <= r.fraction_lost <= 255 or not -0x800000 <= r.cumulative_lost <= 0x7FFFFF:
                raise RtpError(f"report block loss fields out of range: {r}")
            lost = (r.fraction_lost << 24) | (r.cumulative_lost & 0xFFFFFF)
            out += _BLOCK.pack(r.ssrc, lost, r.highest_seq, r.jitter, r.lsr, r.dlsr)
    except struct.error as exc:
        raise RtpError(f"report block field out of range: {exc}") from None
    return bytes(out)


def build_sr(
    ssrc: int,
    ntp_time: float,
    rtp_ts: int,
    packet_count: int,
    octet_count: int,
    reports: tuple[ReportBlock, ...] | list[ReportBlock] = (),
) -> bytes:
    """RTCP sender report; ``ntp_time`` is in seconds since 1900 (see :func:`ntp_from_unix`)."""
    ntp = round(ntp_time * 4294967296.0) & 0xFFFFFFFFFFFFFFFF
    blocks = _pack_blocks(reports)
    try:
        body = _SR_BODY.pack(
            ssrc, ntp >> 32, ntp & 0xFFFFFFFF, rtp_ts & 0xFFFFFFFF, packet_count, octet_count
        )
    except struct.error as exc:
        raise RtpError(f"SR field out of range: {exc}") from None
    return _rtcp_header(RTCP_SR, len(reports), len(body) + len(blocks)) + body + blocks


def build_rr(ssrc: int, reports: tuple[ReportBlock, ...] | list[ReportBlock] = ()) -> bytes:
    """RTCP receiver report (an empty RR is what a receiver that heard nobody sends)."""
    blocks = _pack_blocks(reports)
    try:
        body = _U32.pack(ssrc)
    except struct.error as exc:
        raise RtpError(f"RR field out of range: {exc}") from None
    return _rtcp_header(RTCP_RR, len(reports), 4 + len(blocks)) + body + blocks


def build_sdes(ssrc: int, cname: str) -> bytes:
    """RTCP SDES with one chunk carrying a CNAME (append it to an SR/RR to form a compound packet)."""
    text = cname.encode()
    if len(text) > 255:
        raise RtpError("CNAME longer than 255 octets")
    chunk = _U32.pack(ssrc) + bytes((SDES_CNAME, len(text))) + text + b"\0"
    chunk += bytes(-len(chunk) % 4)
    return _rtcp_header(RTCP_SDES, 1, len(chunk)) + chunk


def build_bye(ssrcs: tuple[int, ...] | list[int], reason: str | None = None) -> bytes:
    """RTCP BYE for up to 31 sources, with an optional reason."""
    if len(ssrcs) > 31:
        raise RtpError("a BYE names at most 31 sources")
    body = b"".join(_U32.pack(s) for s in ssrcs)
    if reason is not None:
        text = reason.encode()[:255]
        body += bytes((len(text),)) + text
        body += bytes(-len(body) % 4)
    return _rtcp_header(RTCP_BYE, len(ssrcs), len(body)) + body


def _parse_blocks(data: bytes, pos: int, count: int, end: int) -> tuple[ReportBlock, ...]:
    if pos + 24 * count > end:
        raise RtpError(f"RTCP report: {count} report blocks do not fit")
    blocks = []
    for _ in range(count):
        ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr))
        pos += 24
    return tuple(blocks)


def _parse_sdes(data: bytes, pos: int, count: int, end: int) -> SourceDescription:
    chunks = []
    for _ in range(count):
        if pos + 4 > end:
            raise RtpError("RTCP SDES chunk truncated")
        ssrc = _U32.unpack_from(data, pos)[0]
        pos += 4
        items = []
        while True:
            if pos >= end:
                raise RtpError("RTCP SDES chunk not terminated")
            kind = data[pos]
            if kind == 0:
                pos += 4 - (pos % 4)  # the null item plus padding to the next 32-bit boundary
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtpError("RTCP SDES item truncated")
            size = data[pos + 1]
            items.append((kind, data[pos + 2 : pos + 2 + size].decode("utf-8", "replace")))
            pos += 2 + size
        chunks.append((ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def _parse_bye(data: bytes, pos: int, count: int, end: int) -> Bye:
    if pos + 4 * count > end:
        raise RtpError("RTCP BYE truncated")
    ssrcs = struct.unpack_from(f"!{count}I", data, pos)
    pos += 4 * count
    reason = None
    if pos < end:
        size = data[pos]
        if pos + 1 + size > end:
            raise RtpError("RTCP BYE reason truncated")
        reason = data[pos + 1 : pos + 1 + size].decode("utf-8", "replace")
    return Bye(tuple(ssrcs), reason)


def parse_rtcp(
    data: bytes | bytearray | memoryview,
) -> list[SenderReport | ReceiverReport | SourceDescription | Bye | RtcpPacket]:
    """Parse a (compound) RTCP packet into its parts; RtpError when malformed.

    Checks version, lengths and that only the last packet is padded (RFC 3550 A.2); does not insist the
    compound starts with SR/RR, so reduced-size RTCP (RFC 5506) is accepted too.
    """
    data = bytes(data)
    total = len(data)
    if total < 4:
        raise RtpError(f"RTCP packet too short ({total} bytes)")
    out: list[SenderReport | ReceiverReport | SourceDescription | Bye | RtcpPacket] = []
    pos = 0
    while pos < total:
        if pos + 4 > total:
            raise RtpError("RTCP trailing bytes")
        b0, pt, words = _RTCP_HEAD.unpack_from(data, pos)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
        end = pos + 4 * (words + 1)
        if end > total:
            raise RtpError(f"RTCP packet length {4 * (words + 1)} exceeds the datagram")
        if b0 & 0x20:
            if end != total:
                raise RtpError("RTCP padding on a packet that is not the last of the compound")
            pad = data[end - 1]
            if pad == 0 or pad > end - pos - 4:
                raise RtpError(f"RTCP padding count {pad} is invalid")
            body_end = end - pad
        else:
            body_end = end
        count = b0 & 0x1F
        body = pos + 4
        if pt == RTCP_SR:
            if body + 24 > body_end:
                raise RtpError("RTCP SR truncated")
            ssrc, msw, lsw, rtp_ts, packets, octets = _SR_BODY.unpack_from(data, body)
            blocks = _parse_blocks(data, body + 24, count, body_end)
            out.append(SenderReport(ssrc, (msw << 32) | lsw, rtp_ts, packets, octets, blocks))
        elif pt == RTCP_RR:
            if body + 4 > body_end:
                raise RtpError("RTCP RR truncated")
            out.append(
                ReceiverReport(
                    _U32.unpack_from(data, body)[0], _parse_blocks(data, body + 4, count, body_end)
                )
            )
        elif pt == RTCP_SDES:
            out.append(_parse_sdes(data, body, count, body_end))
        elif pt == RTCP_BYE:
            out.append(_parse_bye(data, body, count, body_end))
        else:
            out.append(RtcpPacket(pt, count, data[body:body_end]))
        pos = end
    return out
