"""RTP/RTCP parsing and building, wrap arithmetic and RFC 3550 receiver statistics."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.media.rtp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtpError,
    RtpPacket,
    SenderReport,
    SequenceTracker,
    SourceDescription,
    build_bye,
    build_rr,
    build_rtp,
    build_sdes,
    build_sr,
    is_rtcp,
    ntp_from_unix,
    pack_header_into,
    parse_header,
    parse_rtcp,
    parse_rtp,
    seq_diff,
    seq_newer,
    ts_diff,
    ts_newer,
)

u32 = st.integers(0, 0xFFFFFFFF)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(u32, max_size=15).map(tuple),
    extension=st.none()
    | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
    padding=st.integers(0, 255),
)


@given(packets)
def test_rtp_round_trip(pkt: RtpPacket) -> None:
    data = build_rtp(pkt)
    assert parse_rtp(data) == pkt
    assert parse_rtp(bytearray(data)) == pkt
    assert parse_rtp(memoryview(data)) == pkt


@given(packets, st.binary(max_size=16))
def test_parse_header_agrees_with_parse_rtp(pkt: RtpPacket, trailing: bytes) -> None:
    data = build_rtp(pkt)
    buf = bytearray(data + trailing)  # a reused receive buffer longer than the datagram
    hdr = parse_header(buf, len(data))
    assert hdr is not None
    pt, marker, seq, ts, ssrc, start, end = hdr
    assert (pt, marker, seq, ts, ssrc) == (
        pkt.payload_type,
        pkt.marker,
        pkt.sequence,
        pkt.timestamp,
        pkt.ssrc,
    )
    assert bytes(buf[start:end]) == pkt.payload
    assert parse_header(memoryview(buf), len(data)) == hdr
    assert parse_header(data, len(data)) == hdr


@given(st.binary(max_size=80))
def test_parse_header_and_parse_rtp_agree_on_garbage(data: bytes) -> None:
    try:
        pkt = parse_rtp(data)
    except RtpError:
        assert parse_header(data, len(data)) is None
    else:
        hdr = parse_header(data, len(data))
        assert hdr is not None and data[hdr[5] : hdr[6]] == pkt.payload


def test_malformed_packets() -> None:
    good = build_rtp(RtpPacket(0, 1, 2, 3, b"x" * 20))
    cases = {
        "short": good[:11],
        "version 1": bytes([0x40]) + good[1:],
        "csrc overrun": bytes([0x8F]) + good[1:20],
        "extension header missing": bytes([0x90]) + good[1:14],
        "extension overrun": bytes([0x90]) + good[1:12] + struct.pack("!HH", 0xBEDE, 50) + b"abcd",
        "padding zero": bytes([0xA0]) + good[1:-1] + b"\x00",
        "padding too long": bytes([0xA0]) + good[1:-1] + b"\xff",
    }
    for name, data in cases.items():
        with pytest.raises(RtpError):
            parse_rtp(data)
        assert parse_header(data, len(data)) is None, name
    assert parse_header(good, 11) is None


def test_build_errors() -> None:
    for bad in (
        RtpPacket(128, 0, 0, 0, b""),
        RtpPacket(0, 65536, 0, 0, b""),
        RtpPacket(0, 0, 1 << 32, 0, b""),
        RtpPacket(0, 0, 0, 0, b"", csrcs=tuple(range(16))),
        RtpPacket(0, 0, 0, 0, b"", extension=(1, b"abc")),
        RtpPacket(0, 0, 0, 0, b"", padding=256),
    ):
        with pytest.raises(RtpError):
            build_rtp(bad)


def test_known_bytes() -> None:
    pkt = RtpPacket(0, 0x1234, 0xDEADBEEF, 0x01020304, b"\xff" * 4, marker=True, csrcs=(7,), padding=4)
    data = build_rtp(pkt)
    assert data == bytes.fromhex("a1 80 1234 deadbeef 01020304 00000007 ffffffff 000000 04".replace(" ", ""))


def test_pack_header_into() -> None:
    buf = bytearray(200)
    pack_header_into(buf, 8, True, 65537, (1 << 32) + 5, 0xCAFEBABE, offset=20)
    assert buf[:20] == bytes(20)
    hdr = parse_header(memoryview(buf)[20:], 12 + 160)
    assert hdr == (8, True, 1, 5, 0xCAFEBABE, 12, 172)
    pack_header_into(buf, 101, False, 7, 9, 1)
    assert parse_rtp(bytes(buf[:16])) == RtpPacket(101, 7, 9, 1, bytes(buf[12:16]))


def test_is_rtcp() -> None:
    assert is_rtcp(build_rr(1))
    assert not is_rtcp(build_rtp(RtpPacket(0, 1, 2, 3, b"")))
    assert not is_rtcp(build_rtp(RtpPacket(0, 1, 2, 3, b"", marker=True)))
    assert not is_rtcp(b"\x80")


def test_wrap_helpers() -> None:
    assert seq_newer(1, 0) and seq_newer(0, 65535) and seq_newer(10, 65530)
    assert not seq_newer(0, 0) and not seq_newer(65535, 0) and not seq_newer(0, 0x8000)
    assert seq_diff(0, 65535) == 1 and seq_diff(65535, 0) == -1 and seq_diff(5, 5) == 0
    assert ts_newer(0, 0xFFFFFF60) and not ts_newer(0xFFFFFF60, 0)
    assert ts_diff(80, 0xFFFFFFF0) == 96 and ts_diff(0xFFFFFFF0, 80) == -96


@given(st.integers(0, 0xFFFF), st.integers(-0x7FFF, 0x7FFF))
def test_seq_wrap_properties(base: int, delta: int) -> None:
    other = (base + delta) & 0xFFFF
    assert seq_diff(other, base) == delta
    assert seq_newer(other, base) == (delta > 0)


# ------------------------------------------------------------------------------------ SequenceTracker


def feed(tracker: SequenceTracker, seqs: list[int], start_ts: int = 0) -> list[bool]:
    return [tracker.update(s, start_ts + 160 * i, i * 0.02) for i, s in enumerate(seqs)]


def test_tracker_probation_and_in_order() -> None:
    t = SequenceTracker()
    assert feed(t, [100, 101, 102, 103]) == [False, True, True, True]
    assert (t.received, t.expected, t.lost, t.extended_max) == (3, 3, 0, 103)
    assert t.jitter == 0.0


def test_tracker_loss_and_report() -> None:
    t = SequenceTracker()
    feed(t, [1, 2, 3, 5, 6, 9, 10])  # 4, 7 and 8 lost
    assert (t.received, t.expected, t.lost) == (6, 9, 3)
    block = t.report_block(0x1234, lsr=7, dlsr=8)
    assert block == ReportBlock(0x1234, (3 << 8) // 9, 3, 10, 0, 7, 8)
    feed(t, [11, 12, 13])
    assert t.report_block(0x1234).fraction_lost == 0  # interval since the previous report
    t.update(14, 0, 1.0)
    t.update(14, 0, 1.0)  # duplicate: counted as received, so cumulative loss drops by one
    block = t.report_block(1)
    assert block.fraction_lost == 0 and block.cumulative_lost == 2


def test_tracker_wraparound() -> None:
    t = SequenceTracker()
    feed(t, [65533, 65534, 65535, 0, 1, 2])
    assert t.cycles == 65536 and t.extended_max == 65536 + 2
    assert (t.received, t.lost) == (5, 0)
    assert t.report_block(1).highest_seq == 65538


def test_tracker_reorder_and_jump() -> None:
    t = SequenceTracker()
    feed(t, [10, 11, 12])
    assert t.update(11, 0, 0.1) is True  # late packet: counted, max unchanged
    assert t.max_seq == 12
    assert t.update(30000, 0, 0.2) is False  # big jump: not accepted...
    assert t.update(30001, 0, 0.22) is True  # ...until the next one confirms a restart
    assert (t.base_seq, t.max_seq, t.received) == (30001, 30001, 1)


def test_tracker_jitter() -> None:
    t = SequenceTracker(min_sequential=1)
    # Packets every 20 ms in RTP time, arriving alternately 0 and 5 ms late (40 timestamp units).
    for i in range(200):
        t.update(i, 1000 + 160 * i, i * 0.02 + (0.005 if i % 2 else 0.0))
    assert 38 < t.jitter <= 40
    assert t.report_block(1).jitter in (38, 39, 40)


def test_tracker_jitter_across_timestamp_wrap() -> None:
    t = SequenceTracker(min_sequential=1)
    for i in range(100):
        t.update(i, (0xFFFFF000 + 160 * i) & 0xFFFFFFFF, 1000.0 + i * 0.02)
    assert t.jitter < 1.0


# ------------------------------------------------------------------------------------------- RTCP

blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_seq=u32,
    jitter=u32,
    lsr=u32,
    dlsr=u32,
)


@given(u32, st.floats(0, 2**32 - 1), u32, u32, u32, st.lists(blocks, max_size=31))
def test_sr_round_trip(
    ssrc: int, ntp: float, ts: int, packets: int, octets: int, reports: list[ReportBlock]
) -> None:
    data = build_sr(ssrc, ntp, ts, packets, octets, reports)
    assert len(data) == 28 + 24 * len(reports)
    (sr,) = parse_rtcp(data)
    assert isinstance(sr, SenderReport)
    assert (sr.ssrc, sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (ssrc, ts, packets, octets)
    assert sr.reports == tuple(reports)
    assert abs(sr.ntp_time - ntp) <= 1e-6 * max(1.0, ntp / 2**32)
    assert sr.lsr == (sr.ntp >> 16) & 0xFFFFFFFF


@given(u32, st.lists(blocks, max_size=31))
def test_rr_round_trip(ssrc: int, reports: list[ReportBlock]) -> None:
    assert parse_rtcp(build_rr(ssrc, reports)) == [ReceiverReport(ssrc, tuple(reports))]


def test_compound_with_sdes_and_bye() -> None:
    ntp = ntp_from_unix(1_700_000_000.25)
    data = (
        build_sr(1, ntp, 160, 10, 1600) + build_sdes(1, "leg-7@switch.example") + build_bye([1, 2], "hangup")
    )
    assert len(data) % 4 == 0
    sr, sdes, bye = parse_rtcp(data)
    assert isinstance(sr, SenderReport) and sr.ntp >> 32 == 1_700_000_000 + 2_208_988_800
    assert sr.ntp & 0xFFFFFFFF == 1 << 30
    assert isinstance(sdes, SourceDescription) and sdes.cnames == {1: "leg-7@switch.example"}
    assert bye == Bye((1, 2), "hangup")
    assert parse_rtcp(build_bye([5])) == [Bye((5,), None)]


@pytest.mark.parametrize("cname", ["", "a", "ab", "abc", "abcd", "x" * 255])
def test_sdes_padding(cname: str) -> None:
    data = build_sdes(0xABCDEF01, cname) + build_rr(3)
    assert len(data) % 4 == 0
    sdes, rr = parse_rtcp(data)
    assert isinstance(sdes, SourceDescription) and sdes.cnames == {0xABCDEF01: cname}
    assert rr == ReceiverReport(3)


def test_unknown_rtcp_kept_and_padding() -> None:
    app = struct.pack("!BBHI4s", 0x81, 204, 2, 9, b"name")
    padded = struct.pack("!BBHI", 0xA0, 201, 2, 77) + b"\x00\x00\x00\x04"
    out = parse_rtcp(app + padded)
    assert out == [RtcpPacket(204, 1, struct.pack("!I4s", 9, b"name")), ReceiverReport(77)]


def test_rtcp_malformed() -> None:
    rr = build_rr(1, [ReportBlock(2, 0, 0, 0, 0, 0, 0)])
    padded = struct.pack("!BBHI", 0xA0, 201, 2, 77) + b"\x00\x00\x00\x04"
    cases = [
        b"\x80\xc9",  # too short
        b"\x40" + rr[1:],  # version 1
        rr[:-4],  # length field exceeds the datagram
        rr + b"\x80",  # trailing junk
        padded + rr,  # padding not on the last packet
        padded[:-1] + b"\x00",  # zero padding count
        struct.pack("!BBHI", 0x82, 201, 1, 1),  # RR claims 2 blocks it does not have
        struct.pack("!BBHI", 0x81, 202, 1, 1),  # SDES chunk without terminator
        struct.pack("!BBHII", 0x83, 203, 2, 1, 2),  # BYE claims 3 sources
    ]
    for data in cases:
        with pytest.raises(RtpError):
            parse_rtcp(data)
    with pytest.raises(RtpError):
        build_rr(1, [ReportBlock(1, 256, 0, 0, 0, 0, 0)])
    with pytest.raises(RtpError):
        build_rr(1, [ReportBlock(1, 0, 0, 0, 0, 0, 0)] * 32)
