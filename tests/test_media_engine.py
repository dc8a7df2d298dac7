"""The media engine on real loopback sockets: play, DTMF in and out, barge-in, bridge, record, timeouts."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from softswitch.codecs.g711 import alaw_decode, ulaw_decode, ulaw_encode
from softswitch.codecs.telephone_event import TelephoneEvent, decode_event, encode_event
from softswitch.media.dtmf import Rfc4733Receiver
from softswitch.media.engine import DigitEvent, Leg, MediaEngine, PlaybackDone, RtpTimeout
from softswitch.media.prompts import PromptLibrary
from softswitch.media.recorder import RecorderThread

ROOT = Path(__file__).resolve().parent.parent
HEADER = struct.Struct("!BBHII")


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    lib = PromptLibrary(ROOT / "prompts")
    lib.load(languages=("zh", "en"))
    return lib


@pytest.fixture(params=["per_leg", "shared"])
def rtp_mode(request: pytest.FixtureRequest) -> str:
    """Every engine test runs with a socket pair per leg and with one shared port (batched I/O)."""
    return str(request.param)


@pytest.fixture
async def engine(library: PromptLibrary, tmp_path: Path, rtp_mode: str) -> AsyncIterator[MediaEngine]:
    recorder = RecorderThread()
    recorder.start()
    eng = MediaEngine(
        host="127.0.0.1",
        ports=(41000, 41999),
        prompts=library,
        recorder=recorder,
        capacity=64,
        rtp_mode=rtp_mode,
    )
    eng.start()
    yield eng
    eng.stop()
    recorder.stop()


class Peer:
    """A phone's RTP side: a plain UDP socket that sends and collects packets."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.addr: tuple[str, int] = self.sock.getsockname()
        self.packets: list[bytes] = []
        self.seq = 1000
        self.ts = 5000

    def drain(self) -> list[bytes]:
        while True:
            try:
                self.packets.append(self.sock.recv(2048))
            except BlockingIOError:
                return self.packets

    def send(self, leg: Leg, pt: int, payload: bytes, *, marker: bool = False, ts: int | None = None) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        header = HEADER.pack(
            0x80, (0x80 if marker else 0) | pt, self.seq, self.ts if ts is None else ts, 0x1234
        )
        self.sock.sendto(header + payload, ("127.0.0.1", leg.port))

    async def stream(self, leg: Leg, pcm: np.ndarray, *, pt: int = 0) -> None:
        """Send int16 PCM as 20 ms µ-law packets at real time."""
        codes = ulaw_encode(pcm.astype(np.int16))
        for i in range(0, len(codes) - 159, 160):
            self.send(leg, pt, codes[i : i + 160].tobytes())
            self.ts += 160
            await asyncio.sleep(0.02)

    async def digit(self, leg: Leg, event: int, *, duration_ms: int = 100) -> None:
        """An RFC 4733 event the way phones send it: start with marker, updates, three end packets."""
        ts = self.ts
        steps = max(1, duration_ms // 20)
        for i in range(1, steps + 1):
            ev = TelephoneEvent(event, False, 10, 160 * i)
            self.send(leg, 101, encode_event(ev), marker=i == 1, ts=ts)
            await asyncio.sleep(0.02)
        for _ in range(3):
            self.send(leg, 101, encode_event(TelephoneEvent(event, True, 10, 160 * steps)), ts=ts)
        self.ts += 160 * (steps + 3)
        await asyncio.sleep(0.04)

    def close(self) -> None:
        self.sock.close()


def tone(freqs: tuple[float, ...], seconds: float, level: float = 6000.0) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return sum(level * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.int16)  # type: ignore[no-any-return]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Peak normalised cross-correlation of b within a."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    n = len(a) + len(b)
    fa = np.fft.rfft(a, n)
    fb = np.fft.rfft(b, n)
    c = np.fft.irfft(fa * np.conj(fb), n)
    lag = int(np.argmax(c))
    seg = a[lag : lag + len(b)] if lag < len(a) else a[: len(b)]
    m = min(len(seg), len(b))
    seg, bb = seg[:m], b[:m]
    return float(np.dot(seg, bb) / (np.linalg.norm(seg) * np.linalg.norm(bb) + 1e-9))


async def test_play_sends_paced_prompt_audio(engine: MediaEngine, library: PromptLibrary) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    done = leg.play(["digit_1", "digit_2"], barge_in=False)
    assert await asyncio.wait_for(done, 5) is True
    await asyncio.sleep(0.1)
    packets = phone.drain()
    headers = [HEADER.unpack_from(p) for p in packets]
    assert {h[1] & 0x7F for h in headers} == {0}
    seqs = [h[2] for h in headers]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    stamps = [h[3] for h in headers]
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(stamps))
    assert len({h[4] for h in headers}) == 1  # one SSRC
    audio = ulaw_decode(np.frombuffer(b"".join(p[12:] for p in packets), np.uint8))
    for name in ("digit_1", "digit_2"):  # each prompt starts on a frame boundary
        assert correlation(audio, library.pcm("zh", name)) > 0.95
    engine.release(leg)
    phone.close()


async def test_rfc4733_digit_barges_in_and_is_collected(engine: MediaEngine) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", telephone_event_pt=101, remote=phone.addr)
    events: list[object] = []
    leg.on_event = events.append
    playing = leg.play(["main_menu"])
    await asyncio.sleep(0.1)
    await phone.digit(leg, 5)
    assert await asyncio.wait_for(playing, 1) is False  # barge-in
    collecting = leg.collect_digits(4, terminator="#", first_timeout=2, inter_digit_timeout=2)
    for event in (1, 2, 11):  # 1 2 #
        await phone.digit(leg, event)
    assert await asyncio.wait_for(collecting, 2) == "512"
    digits = [e.digit for e in events if isinstance(e, DigitEvent)]
    assert digits == ["5", "1", "2", "#"]  # once each despite three end packets
    assert any(isinstance(e, PlaybackDone) and not e.completed for e in events)
    engine.release(leg)
    phone.close()


async def test_collect_times_out_with_partial_input(engine: MediaEngine) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", telephone_event_pt=101, remote=phone.addr)
    assert await asyncio.wait_for(leg.collect_digits(6, first_timeout=0.3), 2) == ""
    collecting = leg.collect_digits(6, first_timeout=2, inter_digit_timeout=0.3)
    await phone.digit(leg, 7)
    assert await asyncio.wait_for(collecting, 2) == "7"
    engine.release(leg)
    phone.close()


async def test_inband_dtmf_from_audio(engine: MediaEngine) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    collecting = leg.collect_digits(3, first_timeout=3, inter_digit_timeout=3)
    gap = np.zeros(800, np.int16)
    signal = np.concatenate(
        [gap, tone((852, 1477), 0.1), gap, tone((697, 1209), 0.1), gap, tone((941, 1336), 0.1), gap]
    )
    await phone.stream(leg, signal)
    assert await asyncio.wait_for(collecting, 2) == "910"
    engine.release(leg)
    phone.close()


async def test_no_digits_from_speech_prompt_audio(engine: MediaEngine, library: PromptLibrary) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    got: list[str] = []
    leg.on_event = lambda e: got.append(e.digit) if isinstance(e, DigitEvent) else None
    await phone.stream(leg, library.pcm("en", "main_menu")[: 8000 * 4])
    await asyncio.sleep(0.1)
    assert got == []
    engine.release(leg)
    phone.close()


async def test_send_dtmf_as_rfc4733(engine: MediaEngine) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", telephone_event_pt=101, remote=phone.addr)
    await asyncio.wait_for(leg.send_dtmf("1#"), 3)
    await asyncio.sleep(0.1)
    rx = Rfc4733Receiver()
    digits = []
    for p in phone.drain():
        _, b1, _, ts, _ = HEADER.unpack_from(p)
        if b1 & 0x7F == 101:
            assert len(p) == 16
            d = rx.feed(ts, decode_event(p[12:16]), bool(b1 & 0x80))
            if d:
                digits.append(d)
    assert digits == ["1", "#"]
    engine.release(leg)
    phone.close()


async def test_bridge_relays_and_transcodes(engine: MediaEngine) -> None:
    alice, bob = Peer(), Peer()
    a, b = engine.create_leg(), engine.create_leg()
    a.configure(codec="pcmu", remote=alice.addr)
    b.configure(codec="pcma", payload_type=8, remote=bob.addr)
    engine.bridge(a, b)
    await asyncio.sleep(0.05)
    bob.drain()
    bob.packets.clear()
    speech = tone((440, 660), 0.6)
    await alice.stream(a, speech)
    await asyncio.sleep(0.1)
    packets = [p for p in bob.drain() if HEADER.unpack_from(p)[1] & 0x7F == 8]
    assert len(packets) >= 25
    headers = [HEADER.unpack_from(p) for p in packets]
    assert {h[4] for h in headers} == {b.ssrc}  # rewritten SSRC
    seqs = [h[2] for h in headers]
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
    audio = alaw_decode(np.frombuffer(b"".join(p[12:] for p in packets), np.uint8))
    assert correlation(audio, speech) > 0.95
    engine.release(a)
    engine.release(b)
    alice.close()
    bob.close()


async def test_symmetric_rtp_latches_to_the_real_source(engine: MediaEngine) -> None:
    sdp_addr, real = Peer(), Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=sdp_addr.addr)  # what SDP said
    await real.stream(leg, np.zeros(1600, np.int16))  # the phone (behind NAT) sends from elsewhere
    real.drain()
    real.packets.clear()
    await asyncio.sleep(0.1)
    assert len(real.drain()) >= 3
    assert leg.remote == real.addr
    engine.release(leg)
    sdp_addr.close()
    real.close()


async def test_rtp_timeout_event(library: PromptLibrary, rtp_mode: str) -> None:
    eng = MediaEngine(
        host="127.0.0.1",
        ports=(42000, 42099),
        prompts=library,
        capacity=8,
        rtp_timeout_s=0.5,
        rtp_mode=rtp_mode,
    )
    eng.start()
    phone = Peer()
    leg = eng.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    events: list[object] = []
    leg.on_event = events.append
    await asyncio.sleep(1.6)
    timeouts = [e for e in events if isinstance(e, RtpTimeout)]
    assert len(timeouts) == 1 and timeouts[0].silent_for >= 0.5
    eng.stop()
    phone.close()


async def test_recording_stereo_caller_left_prompt_right(
    engine: MediaEngine, library: PromptLibrary, tmp_path: Path
) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    rec = leg.record(tmp_path / "call.wav")
    leg.play(["digit_8"], barge_in=False)
    caller = tone((300, 500), 1.0, 4000)
    await phone.stream(leg, caller)
    leg.pause_recording()
    await phone.stream(leg, tone((300, 500), 0.4, 4000))
    leg.resume_recording()
    await asyncio.sleep(0.2)
    leg.stop_recording()
    assert await asyncio.to_thread(rec.wait, 10)
    data, rate = sf.read(tmp_path / "call.wav", dtype="int16")
    assert rate == 8000 and data.shape[1] == 2
    left, right = data[:, 0], data[:, 1]
    assert correlation(left, caller[1600:6400]) > 0.9
    assert correlation(right, library.pcm("zh", "digit_8")) > 0.9
    (start, end), *_ = rec.pauses
    assert end is not None and end - start >= 0.3
    paused = left[int(start * 8000) + 80 : int(end * 8000) - 80]
    assert len(paused) > 1000 and not paused.any()  # silence in place of the audio while paused
    engine.release(leg)
    phone.close()


async def test_bridged_recording_has_both_parties(engine: MediaEngine, tmp_path: Path) -> None:
    alice, bob = Peer(), Peer()
    a, b = engine.create_leg(), engine.create_leg()
    a.configure(codec="pcmu", remote=alice.addr)
    b.configure(codec="pcmu", remote=bob.addr)
    engine.bridge(a, b)
    rec = a.record(tmp_path / "bridge.wav")
    sa, sb = tone((350,), 1.0, 5000), tone((1100,), 1.0, 5000)
    await asyncio.gather(alice.stream(a, sa), bob.stream(b, sb))
    await asyncio.sleep(0.1)
    a.stop_recording()
    assert await asyncio.to_thread(rec.wait, 10)
    data, _ = sf.read(tmp_path / "bridge.wav", dtype="int16")
    assert correlation(data[:, 0], sa[800:5600]) > 0.9
    assert correlation(data[:, 1], sb[800:5600]) > 0.9
    for leg in (a, b):
        engine.release(leg)
    alice.close()
    bob.close()


async def test_tone_cadence_and_release_frees_ports(engine: MediaEngine) -> None:
    phone = Peer()
    leg = engine.create_leg()
    port = leg.port
    leg.configure(codec="pcmu", remote=phone.addr)
    leg.tone("busy_cn")
    await asyncio.sleep(1.0)
    audio = ulaw_decode(np.frombuffer(b"".join(p[12:] for p in phone.drain()), np.uint8)).astype(float)
    frames = np.abs(audio[: len(audio) // 160 * 160].reshape(-1, 160)).mean(axis=1)
    on = frames > 500
    assert 0.3 < on.mean() < 0.7  # 0.35 s on, 0.35 s off
    engine.release(leg)
    again = engine.create_leg()
    assert engine.allocator.in_use == 1
    engine.release(again)
    assert port % 2 == 0
    phone.close()


async def test_bad_packets_are_counted_not_fatal(engine: MediaEngine) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    for junk in (
        b"",
        b"\x00" * 5,
        b"\x40" * 40,
        b"\x80\x00\x00",
        b"\x90" + b"\x00" * 15,
        b"\xa0" + b"\x00" * 11 + b"\xff",
    ):
        phone.sock.sendto(junk, ("127.0.0.1", leg.port))
    await asyncio.sleep(0.1)
    assert leg.bad_packets >= 4
    await phone.stream(leg, np.zeros(800, np.int16))
    assert leg.packets_in >= 4
    engine.release(leg)
    phone.close()


def test_no_digits_on_hold_music_and_prompts(library: PromptLibrary) -> None:
    """Every shipped prompt (speech in both languages, and the hold music) through the batched detector."""
    from softswitch.media.dtmf import GoertzelDetector

    names = [
        (lang, n) for lang in ("zh", "en") for n in sorted(library.names(lang)) if not n.startswith("digit_")
    ]
    det = GoertzelDetector(len(names))
    streams = [ulaw_decode(ulaw_encode(library.pcm(lang, n))) for lang, n in names]
    longest = max(len(s) for s in streams) // 160 + 1
    slots = np.arange(len(names))
    found = []
    for i in range(longest):
        frames = np.zeros((len(names), 160), np.int16)
        for j, s in enumerate(streams):
            chunk = s[i * 160 : (i + 1) * 160]
            frames[j, : len(chunk)] = chunk
        found += det.process(slots, frames)
    assert found == [], [(names[s], d) for s, d in found]


async def test_pcap_replay_delivers_audio_and_digits(
    engine: MediaEngine, library: PromptLibrary, tmp_path: Path
) -> None:
    """A raw UDP sender plays an RTP pcap (speech, then RFC 4733 digits 4 2 #) at the engine."""
    from .rtp_pcap import read_pcap, write_pcap

    speech = library.pcm("en", "welcome")[: 8000 * 2]
    codes = ulaw_encode(speech)
    packets: list[tuple[float, bytes]] = []
    t, seq, ts = 1_700_000_000.0, 100, 8000
    for i in range(0, len(codes) - 159, 160):
        packets.append((t, HEADER.pack(0x80, 0, seq, ts, 0xABCD) + codes[i : i + 160].tobytes()))
        t, seq, ts = t + 0.02, seq + 1, ts + 160
    for event in (4, 2, 11):
        for k in range(1, 6):
            body = encode_event(TelephoneEvent(event, k == 5, 10, 160 * k))
            for _ in range(3 if k == 5 else 1):
                packets.append((t, HEADER.pack(0x80, (0x80 if k == 1 else 0) | 101, seq, ts, 0xABCD) + body))
                seq += 1
            t += 0.02
        ts += 160 * 8
        t += 0.06
    write_pcap(tmp_path / "call.pcap", packets)

    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", telephone_event_pt=101, remote=phone.addr)
    rec = leg.record(tmp_path / "in.wav")
    collecting = leg.collect_digits(5, terminator="#", first_timeout=10, inter_digit_timeout=3)
    replay = read_pcap(tmp_path / "call.pcap")
    t0, start = replay[0][0], asyncio.get_running_loop().time()
    for when, payload in replay:
        delay = start + (when - t0) - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
        phone.sock.sendto(payload, ("127.0.0.1", leg.port))
    assert await asyncio.wait_for(collecting, 3) == "42"
    leg.stop_recording()
    assert await asyncio.to_thread(rec.wait, 10)
    data, _ = sf.read(tmp_path / "in.wav", dtype="int16")
    assert correlation(data[:, 0], ulaw_decode(codes)[1600:12800]) > 0.95
    engine.release(leg)
    phone.close()
