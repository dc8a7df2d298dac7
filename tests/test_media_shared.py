"""Shared-port RTP: demultiplexing legs by remote address on one port, latching, junk; the batched socket."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from softswitch.media.engine import Leg, MediaEngine, MediaError
from softswitch.media.mmsg import MmsgSocket, address_key, key_address, sockaddr
from softswitch.media.rtp import ReceiverReport, SenderReport, build_rr, parse_rtcp
from tests.peers import free_port

HEADER = struct.Struct("!BBHII")


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    eng = MediaEngine(host="127.0.0.1", ports=(43000, 43099), capacity=16, rtp_mode="shared")
    eng.start()
    yield eng
    eng.stop()


class Phone:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.setblocking(False)
        self.addr: tuple[str, int] = self.sock.getsockname()
        self.seq = 0

    def send(self, leg: Leg, payload: bytes = b"\xff" * 160, pt: int = 0, ssrc: int = 0x1234) -> None:
        self.seq += 1
        self.sock.sendto(
            HEADER.pack(0x80, pt, self.seq, 160 * self.seq, ssrc) + payload, ("127.0.0.1", leg.port)
        )

    def ssrcs(self) -> set[int]:
        out = set()
        while True:
            try:
                out.add(HEADER.unpack_from(self.sock.recv(2048))[4])
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_two_legs_from_two_remotes_on_one_port(engine: MediaEngine) -> None:
    alice, bob = Phone(), Phone()
    a, b = engine.create_leg(), engine.create_leg()
    assert a.port == b.port == engine.shared.port  # type: ignore[union-attr]  # one port in both SDPs
    a.configure(codec="pcmu", remote=alice.addr)
    b.configure(codec="pcmu", remote=bob.addr)
    for _ in range(5):
        alice.send(a)
    for _ in range(3):
        bob.send(b)
    await until(lambda: a.packets_in == 5 and b.packets_in == 3)
    await asyncio.sleep(0.1)
    assert alice.ssrcs() == {a.ssrc} and bob.ssrcs() == {b.ssrc}  # each phone hears only its own leg
    assert a.latched and b.latched and engine.shared.unmatched == 0  # type: ignore[union-attr]
    for leg in (a, b):
        engine.release(leg)
    assert engine.shared.by_addr == {} and engine.shared.awaiting == {}  # type: ignore[union-attr]
    alice.close()
    bob.close()


async def test_latch_to_another_port_of_the_sdp_ip(engine: MediaEngine) -> None:
    sdp, real, stranger = Phone(), Phone(), Phone()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=sdp.addr)
    real.send(leg)
    await until(lambda: leg.latched)
    assert leg.remote == real.addr and leg.packets_in == 1
    await asyncio.sleep(0.1)
    assert real.ssrcs() == {leg.ssrc}  # now sent where the media comes from
    sdp.ssrcs()
    stranger.send(leg)  # the leg is latched: a third source is nobody's
    sdp.send(leg)  # nor is the SDP address any more
    await until(lambda: engine.shared.unmatched == 2)  # type: ignore[union-attr]
    assert leg.remote == real.addr and leg.packets_in == 1
    # a re-INVITE with a new address: the leg waits for its first packet again
    leg.configure(remote=stranger.addr)
    assert not leg.latched
    stranger.send(leg)
    await until(lambda: leg.latched and leg.packets_in == 2)
    assert leg.remote == stranger.addr
    engine.release(leg)
    for p in (sdp, real, stranger):
        p.close()


async def test_unknown_source_is_dropped(engine: MediaEngine) -> None:
    phone, other_ip = Phone(), Phone("127.0.0.2")
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    other_ip.send(leg)  # no leg waits for media from 127.0.0.2
    await until(lambda: engine.shared.unmatched == 1)  # type: ignore[union-attr]
    assert leg.packets_in == 0 and not leg.latched and leg.remote == phone.addr
    engine.release(leg)
    phone.close()
    other_ip.close()


async def test_ambiguous_first_packet_is_dropped_not_guessed(engine: MediaEngine) -> None:
    one, two, nat = Phone(), Phone(), Phone()
    a, b = engine.create_leg(), engine.create_leg()
    a.configure(codec="pcmu", remote=one.addr)
    b.configure(codec="pcmu", remote=two.addr)
    nat.send(a)  # same IP as both SDP addresses, neither port: could be either call
    await until(lambda: engine.shared.unmatched == 1)  # type: ignore[union-attr]
    assert a.packets_in == b.packets_in == 0
    one.send(a)  # the exact address still works
    await until(lambda: a.packets_in == 1)
    nat.send(b)  # now b is the only leg of that IP still waiting: it latches
    await until(lambda: b.packets_in == 1)
    assert b.remote == nat.addr
    for leg in (a, b):
        engine.release(leg)
    for p in (one, two, nat):
        p.close()


async def test_only_valid_rtp_latches(engine: MediaEngine) -> None:
    sdp, real = Phone(), Phone()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=sdp.addr)
    real.sock.sendto(b"\x00" * 40, ("127.0.0.1", leg.port))  # not RTP
    real.send(leg, pt=18)  # RTP, but not a payload type of this leg
    await until(lambda: leg.bad_packets == 2)
    assert not leg.latched and leg.remote == sdp.addr
    engine.release(leg)
    sdp.close()
    real.close()


async def test_newest_leg_takes_a_shared_remote(engine: MediaEngine) -> None:
    phone = Phone()
    old, new = engine.create_leg(), engine.create_leg()
    old.configure(codec="pcmu", remote=phone.addr)
    new.configure(codec="pcmu", remote=phone.addr)
    phone.send(new)
    await until(lambda: new.packets_in == 1)
    assert old.packets_in == 0
    engine.release(old)  # releasing the old leg must not unfile the new one
    phone.send(new)
    await until(lambda: new.packets_in == 2)
    engine.release(new)
    phone.close()


async def test_bad_packets_never_stop_the_batch(engine: MediaEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = Phone(), Phone()
    a, b = engine.create_leg(), engine.create_leg()
    a.configure(codec="pcmu", remote=alice.addr)
    b.configure(codec="pcmu", remote=bob.addr)
    real = engine._rtp_packet

    def flaky(leg: Leg, buf: memoryview, n: int, addr: tuple[str, int]) -> None:
        if leg is a:
            raise RuntimeError("boom")
        real(leg, buf, n, addr)

    monkeypatch.setattr(engine, "_rtp_packet", flaky)
    # one burst, read in one recvmmsg batch: junk, a packet whose handling raises, then good packets
    for junk in (
        b"",
        b"\x80",
        b"\x90" + b"\x00" * 11 + b"\xff\xff\xff\xff",
        b"\xa0" + b"\x00" * 11 + b"\xff",
    ):
        bob.sock.sendto(junk, ("127.0.0.1", b.port))
    alice.send(a)
    for _ in range(3):
        bob.send(b)
    await until(lambda: b.packets_in == 3)
    assert b.bad_packets == 4
    monkeypatch.undo()
    alice.send(a)
    await until(lambda: a.packets_in == 1)
    for leg in (a, b):
        engine.release(leg)
    alice.close()
    bob.close()


async def test_rtcp_on_the_shared_port(engine: MediaEngine) -> None:
    p = free_port(even=True, tcp=False)  # a phone with RTP on p and RTCP on p + 1
    rtp, rtcp = Phone(port=p), Phone(port=p + 1)
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=rtp.addr)
    assert engine.shared is not None
    rtcp.sock.sendto(build_rr(0x1234, ()), ("127.0.0.1", engine.shared.port + 1))
    await until(lambda: bool(leg.rtcp_last))
    engine._send_rtcp()
    await asyncio.sleep(0.05)
    data, src = rtcp.sock.recvfrom(2048)
    assert src == ("127.0.0.1", engine.shared.port + 1)
    report = parse_rtcp(data)[0]
    assert isinstance(report, SenderReport | ReceiverReport) and report.ssrc == leg.ssrc
    engine.release(leg)
    rtp.close()
    rtcp.close()


async def test_shared_port_option_and_errors() -> None:
    eng = MediaEngine(host="127.0.0.1", ports=(43100, 43199), rtp_mode="shared", shared_port=43150)
    eng.start()
    assert eng.create_leg().port == 43150
    with pytest.raises(MediaError):
        MediaEngine(host="127.0.0.1", ports=(43100, 43199), rtp_mode="shared", shared_port=43150)  # in use
    eng.stop()
    with pytest.raises(MediaError):
        eng.create_leg()
    with pytest.raises(ValueError):
        MediaEngine(rtp_mode="sharde")
    with pytest.raises(MediaError):
        MediaEngine(host="::1", ports=(43100, 43199), rtp_mode="shared")


# ---- the batched socket ------------------------------------------------------
def test_address_keys_round_trip() -> None:
    assert key_address(address_key("10.1.2.3", 5004)) == ("10.1.2.3", 5004)
    assert sockaddr("1.2.3.4", 258)[:8] == b"\x02\x00\x01\x02\x01\x02\x03\x04"
    for bad in ("example.com", "1.2", "::1"):
        with pytest.raises(ValueError):
            sockaddr(bad, 1)


def test_mmsg_batches_sources_and_destinations() -> None:
    gen = MmsgSocket("0.0.0.0", 0, batch=8, size=64, pktinfo=True)
    srv = MmsgSocket("127.0.0.1", 0, batch=8, size=64, timestamps=False)
    ips = np.array([(127 << 24) | (1 << 16) | i for i in range(1, 5)], dtype=np.uint32)
    gen.set_destinations(np.full(4, srv.address[1]))
    gen.set_sources(ips)  # one socket posing as four phones
    gen.tx[:4, 0] = np.arange(4)
    assert gen.send(4, np.array([10, 11, 12, 13])) == 4
    time.sleep(0.05)
    n = srv.recv_batch()
    assert n == 4 and srv.rx_lens[:n].tolist() == [10, 11, 12, 13]
    sources = [key_address(k) for k in srv.rx_keys[:n].tolist()]
    assert sources == [(f"127.1.0.{i}", gen.address[1]) for i in range(1, 5)]
    srv.tx_names[:n] = srv.rx_names[:n]  # answer each source
    srv.tx_names[n] = np.frombuffer(sockaddr("127.0.0.1", 0), np.uint8)  # port 0: refused, skipped
    srv.tx_names[n + 1] = srv.rx_names[0]
    assert srv.send(n + 2, 5) == n + 1 and srv.send_errors == 1
    time.sleep(0.05)
    got, lens, _ports, stamps = gen.recv()
    assert got == 5 and lens.tolist() == [5] * 5
    assert abs(stamps - time.time()).max() < 5  # kernel timestamps
    dests = [socket.inet_ntoa(int(d).to_bytes(4, "big")) for d in gen.rx_destinations(got)]
    assert dests == [f"127.1.0.{i}" for i in (1, 2, 3, 4, 1)]
    gen.close()
    srv.close()


# ---- [media] config ----------------------------------------------------------
def test_media_config(tmp_path: Path) -> None:
    from softswitch.config import ConfigError, load_config

    path = tmp_path / "switch.toml"
    path.write_text(
        '[switch]\nrtp_ports = [30000, 30999]\n\n[media]\nrtp_mode = "shared"\nshared_port = 30100\n'
    )
    cfg = load_config(path)
    assert (cfg.rtp_mode, cfg.shared_rtp_port) == ("shared", 30100)
    path.write_text("[switch]\n")
    assert load_config(path).rtp_mode == "per_leg"
    path.write_text("[media]\nrealtime_priority = 10\n")
    assert load_config(path).realtime_priority == 10
    path.write_text(
        '[media]\nrtp_mode = "batched"\nshared_port = 30101\ncolour = 1\nrealtime_priority = 120\n'
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [
        f'{path}:2: media.rtp_mode: unknown mode \'batched\'; expected "per_leg" or "shared"',
        f"{path}:3: media.shared_port: expected an even port inside switch.rtp_ports 20000-39999, got 30101",
        f"{path}:4: media.colour: unknown key; expected rtp_mode, shared_port, realtime_priority",
        f"{path}:5: media.realtime_priority: expected 0 (off) to 99, got 120",
    ]
