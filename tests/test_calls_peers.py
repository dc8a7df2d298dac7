"""Calls through the switch's B2BUA with real peers: SIPp callers and callees, baresip phones, raw UDP.

Every test starts its own switch (accounts 1001..1004, ``^[0-9]{4}$`` -> extension, recording on,
``ring_timeout_s`` = 3, a free RTP port range), registers the callees, runs the peers bounded in time
and checks what each side saw: SIP (SIPp's ``messages.log`` and ``<log>`` lines), RTP (a Python probe
stands in for a callee's media, or SIPp plays/echoes), the CDR (``softswitch cdr --csv``) and the
recording. Audio is compared by normalised cross-correlation at the best alignment.
The SIPp scenarios are in ``tests/data/sipp/``. A missing tool skips, or fails when ``CI`` is set.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from softswitch.codecs.g711 import alaw_decode, ulaw_decode, ulaw_encode
from tests import peers
from tests.baresip import Baresip
from tests.peers import LOOPBACK, SippProcess, Switch
from tests.rtp_pcap import write_pcap
from tests.tools import require_tool

pytestmark = pytest.mark.peer

SCENARIOS = Path(__file__).resolve().parent / "data" / "sipp"
USERS = [(str(u), f"pw{u}") for u in range(1001, 1005)]
PASSWORDS = dict(USERS)
RING_TIMEOUT_S = 3
CALLS_TOML = """
[[routes]]
match = "^[0-9]{4}$"
to = "extension"

[recording]
enabled = true
format = "wav"
path = "recordings/{date}/{call_id}.{ext}"

[calls]
ring_timeout_s = %d
rtp_timeout_s = 30
"""
MIN_SIMILARITY = 0.8
SPEECH = {
    "a": (
        "en",
        "Hello, this is the caller speaking. One, two, three, four, five. The quick brown fox jumps over the lazy dog.",
    ),
    "b": ("cmn", "你好。这里是被叫方。今天天气很好。我们一起去公园散步吧。谢谢你的电话。再见。"),
}


# ---------------------------------------------------------------- audio


class Speech:
    """One speech clip: 8 kHz mono int16 samples, its WAV, and an RTP (PCMU) pcap of it for SIPp."""

    def __init__(self, folder: Path, name: str, voice: str, text: str) -> None:
        raw, self.wav, self.pcap = folder / f"{name}-raw.wav", folder / f"{name}.wav", folder / f"{name}.pcap"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(raw), text], check=True, timeout=60,
                       capture_output=True)  # fmt: skip
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(self.wav),
                        "trim", "0", "6"], check=True, timeout=60, capture_output=True)  # fmt: skip
        self.pcm = read_wav(self.wav)[:, 0]
        self.rtp = rtp_stream(self.pcm)
        write_pcap(self.pcap, self.rtp)

    def padded_wav(self, path: Path, seconds: float) -> Path:
        """The clip followed by silence (baresip 1.0 hangs up when its WAV microphone ends)."""
        write_wav(path, np.concatenate([self.pcm, np.zeros(int(seconds * 8000), np.int16)]))
        return path


def rtp_stream(pcm: np.ndarray, ssrc: int = 0x5EED0001) -> list[tuple[float, bytes]]:
    """20 ms PCMU packets of ``pcm``: [(offset s, datagram)]."""
    out = []
    for i in range(len(pcm) // 160):
        payload = ulaw_encode(pcm[i * 160 : (i + 1) * 160]).tobytes()
        header = struct.pack("!BBHII", 0x80, 0x80 if i == 0 else 0, 1000 + i, 16000 + 160 * i, ssrc)
        out.append((i * 0.02, header + payload))
    return out


def rtp_audio(datagrams: Sequence[bytes]) -> np.ndarray:
    """The G.711 audio of RTP datagrams in arrival order (other payload types skipped)."""
    chunks = []
    for d in datagrams:
        if len(d) < 12 or d[0] >> 6 != 2 or (d[1] & 0x7F) not in (0, 8):
            continue
        start = 12 + 4 * (d[0] & 0x0F)
        if d[0] & 0x10:
            start += 4 + 4 * struct.unpack_from("!H", d, start + 2)[0]
        end = len(d) - (d[-1] if d[0] & 0x20 else 0)
        chunks.append((ulaw_decode if d[1] & 0x7F == 0 else alaw_decode)(d[start:end]))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def read_wav(path: Path) -> np.ndarray:
    """(frames, channels) int16 of a 16-bit WAV at 8 kHz."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, f"{path}: {8 * w.getsampwidth()}-bit"
        assert w.getframerate() == 8000, f"{path}: {w.getframerate()} Hz"
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return data.reshape(-1, w.getnchannels())


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.astype("<i2").tobytes())


def similarity(received: np.ndarray, reference: np.ndarray) -> float:
    """Normalised cross-correlation of ``received`` with ``reference`` at their best alignment.

    The lag is the peak of the raw cross-correlation; the score is the cosine similarity of the
    overlapping parts at that lag, so a received excerpt of the reference also scores ~1.
    """
    x, y = received.astype(np.float64), reference.astype(np.float64)
    if x.size < 1600 or y.size < 1600 or not x.any() or not y.any():
        return 0.0
    n = 1 << int(np.ceil(np.log2(x.size + y.size)))
    c = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(y, n)), n)
    k = int(np.argmax(c))
    lag = k if k < x.size else k - n  # x[i + lag] ~ y[i]
    xs, ys = (x[lag:], y) if lag >= 0 else (x, y[-lag:])
    m = min(xs.size, ys.size)
    xs, ys = xs[:m], ys[:m]
    denom = float(np.sqrt(np.dot(xs, xs) * np.dot(ys, ys)))
    return float(np.dot(xs, ys) / denom) if denom else 0.0


def aligned_similarity(received: np.ndarray, reference: np.ndarray, window: int = 4000) -> float:
    """Energy-weighted mean of :func:`similarity` over ``window``-sample pieces of ``received``, each
    aligned on its own: tolerates the small time shifts a jitter buffer (or a recorder) introduces."""
    total = weight = 0.0
    for i in range(0, max(0, received.size - window // 2), window):
        piece = received[i : i + window]
        energy = float(np.dot(piece.astype(np.float64), piece))
        if energy:
            total += energy * similarity(piece, reference)
            weight += energy
    return total / weight if weight else 0.0


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Speech]:
    require_tool("espeak-ng")
    require_tool("sox")
    folder = tmp_path_factory.mktemp("speech")
    return {name: Speech(folder, name, voice, text) for name, (voice, text) in SPEECH.items()}


# ---------------------------------------------------------------- RTP probe


class RtpProbe:
    """A loopback RTP endpoint in a thread: records every datagram; can echo, or send a paced stream.

    ``packets`` holds (monotonic time, (host, port), datagram). Stop it with :meth:`stop` (bounded).
    """

    def __init__(self, *, echo: bool = False) -> None:
        self.port = peers.free_port(even=True, tcp=False)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, self.port))
        self.sock.settimeout(0.05)
        self.echo = echo
        self.packets: list[tuple[float, tuple[str, int], bytes]] = []
        self._outbox: list[tuple[float, tuple[str, int], bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtp-probe-{self.port}", daemon=True)

    def start(self) -> RtpProbe:
        self._thread.start()
        return self

    def play(self, dest: tuple[str, int], stream: Sequence[tuple[float, bytes]]) -> None:
        """Send ``stream`` [(offset s, RTP datagram)] to ``dest`` from the probe's port, paced."""
        t0 = time.monotonic() + 0.02
        with self._lock:
            self._outbox.extend((t0 + t, dest, data) for t, data in stream)
            self._outbox.sort(key=lambda x: x[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                due = 0
                while due < len(self._outbox) and self._outbox[due][0] <= now:
                    due += 1
                batch, self._outbox = self._outbox[:due], self._outbox[due:]
                next_at = self._outbox[0][0] if self._outbox else now + 0.05
            for _, dest, data in batch:
                with contextlib.suppress(OSError):
                    self.sock.sendto(data, dest)
            self.sock.settimeout(max(0.001, min(0.05, next_at - time.monotonic())))
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return
            self.packets.append((time.monotonic(), addr, data))
            if self.echo:
                with contextlib.suppress(OSError):
                    self.sock.sendto(data, addr)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def sources(self) -> dict[tuple[str, int], int]:
        """Datagram count per source address."""
        out: dict[tuple[str, int], int] = {}
        for _, addr, _ in self.packets:
            out[addr] = out.get(addr, 0) + 1
        return out

    def audio_from(self, addr: tuple[str, int] | None = None) -> np.ndarray:
        return rtp_audio([d for _, a, d in self.packets if addr is None or a == addr])


# ---------------------------------------------------------------- the switch, callees, CDRs


class Harness:
    """What a test started (switch, SIPp, probes, phones); :meth:`close` ends all of it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.switch: Switch | None = None
        self.sipps: list[SippProcess] = []
        self.probes: list[RtpProbe] = []
        self.phones: list[Baresip] = []

    def start_switch(self) -> Switch:
        sw = Switch(self.folder / "switch", USERS, rtp_ports=peers.free_port_range(200),
                    extra_toml=CALLS_TOML % RING_TIMEOUT_S)  # fmt: skip
        self.switch = sw
        return sw.start()

    @property
    def sw(self) -> Switch:
        assert self.switch is not None
        return self.switch

    def probe(self, *, echo: bool = False) -> RtpProbe:
        p = RtpProbe(echo=echo).start()
        self.probes.append(p)
        return p

    def callee(self, user: str, scenario: str, *, duration_ms: int | None = None,
               keys: dict[str, str | int] | None = None) -> SippProcess:  # fmt: skip
        """A SIPp UAS registered as ``user`` (REGISTER sent from its own port, then SIPp binds it)."""
        peers.require_tools("sipp")
        port = peers.free_port()
        status = peers.register_contact(self.sw.port, user, PASSWORDS[user], contact_port=port)
        assert status == 200, f"REGISTER {user} -> {status}\n{self.sw.log()[-2000:]}"
        p = SippProcess(SCENARIOS / scenario, self._folder(f"uas-{user}"), port=port, keys=keys,
                        duration_ms=duration_ms, timeout=25, extra=["-aa"])  # fmt: skip
        self.sipps.append(p)
        return p.start()

    def caller(self, scenario: str, number: str, *, user: str = "1001", duration_ms: int | None = None,
               pcap: Path | None = None, rtp_echo: bool = False, extra: Sequence[str] = ()) -> SippProcess:  # fmt: skip
        p = SippProcess(SCENARIOS / scenario, self._folder(f"uac-{user}"), target=self.sw.target,
                        users=[(user, PASSWORDS[user])], service=number, duration_ms=duration_ms, pcap=pcap,
                        rtp_echo=rtp_echo, timeout=25, extra=extra)  # fmt: skip
        self.sipps.append(p)
        time.sleep(0.2)  # let the callees' SIPp bind their ports
        return p.start()

    def _folder(self, name: str) -> Path:
        n = 1
        while (self.folder / (name if n == 1 else f"{name}-{n}")).exists():
            n += 1
        return self.folder / (name if n == 1 else f"{name}-{n}")

    def cdr(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, str]]:
        return self.sw.wait_cdr(count, timeout)

    def close(self) -> None:
        stops: list[Callable[[], object]] = [*(ua.kill for ua in self.phones), *(p.kill for p in self.sipps)]
        stops += [p.stop for p in self.probes]
        if self.switch is not None:
            stops.append(self.switch.stop)
        for stop in stops:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                stop()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        harness.start_switch()
        yield harness
    finally:
        harness.close()


def stop_cleanly(sw: Switch) -> None:
    """SIGTERM: the switch must exit 0 and must not have logged a traceback."""
    rc = sw.stop()
    assert rc == 0, f"switch exit code {rc}:\n{sw.log()[-3000:]}"
    assert not sw.tracebacks(), "switch logged tracebacks:\n" + "\n".join(sw.tracebacks())


def assert_ok(*procs: SippProcess) -> None:
    """Every SIPp run ended with all its calls successful (waits for each, bounded)."""
    for p in procs:
        res = p.wait()
        assert res.rc == 0 and res.successful >= 1 and res.failed == 0, p.describe()


def in_range(port: str | int, sw: Switch) -> bool:
    assert sw.rtp_ports is not None
    return sw.rtp_ports[0] <= int(port) <= sw.rtp_ports[1]


def when(iso: str) -> float:
    """Epoch seconds of a CDR time (ISO 8601 UTC, ``...Z``)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def recording_of(row: dict[str, str], sw: Switch) -> np.ndarray:
    """The recording named by a CDR row (relative paths are under data_dir): (frames, 2) int16."""
    assert row["recording_path"], f"no recording in the CDR: {row}"
    path = Path(row["recording_path"])
    if not path.is_absolute():
        path = sw.data_dir / path
    assert path.is_file(), f"recording {path} missing: {sorted(sw.data_dir.rglob('*'))}"
    pcm = read_wav(path)
    assert pcm.shape[1] == 2, f"{path}: {pcm.shape[1]} channels, expected stereo (caller left, callee right)"
    return pcm


# ---------------------------------------------------------------- SIPp's message log


def sipp_messages(p: SippProcess) -> list[tuple[str, str]]:
    """(``sent`` | ``received``, text) of every SIP message in a SIPp run's messages.log."""
    out = []
    for block in re.split(r"(?m)^-{20,} .*$", p.messages()):
        m = re.match(r"\s*\w+ message (sent|received)[^\n]*\n\n?(.*)", block, re.S)
        if m:
            out.append((m.group(1), m.group(2).strip("\n")))
    return out


def header(msg: str, name: str) -> str | None:
    m = re.search(rf"(?im)^{re.escape(name)}\s*:\s*(.*?)\s*$", msg.split("\n\n", 1)[0])
    return m.group(1) if m else None


def body(msg: str) -> str:
    return msg.split("\n\n", 1)[1] if "\n\n" in msg else ""


def received(p: SippProcess, first_line: str) -> list[str]:
    """Messages SIPp received whose first line starts with ``first_line`` (e.g. "INVITE ", "SIP/2.0 200")."""
    return [text for way, text in sipp_messages(p) if way == "received" and text.startswith(first_line)]


def sdp_version(sdp_text: str) -> int:
    m = re.search(r"(?m)^o=\S+ \S+ (\d+) ", sdp_text)
    assert m, f"no o= line: {sdp_text!r}"
    return int(m.group(1))


def direction(sdp_text: str) -> str:
    found = re.findall(r"(?m)^a=(sendrecv|sendonly|recvonly|inactive)\s*$", sdp_text)
    return found[-1] if found else "sendrecv"  # RFC 3264: sendrecv when absent


# ---------------------------------------------------------------- SIPp calls


def test_call_answered_media_anchored_recorded_bye(h: Harness, speech: dict[str, Speech]) -> None:
    """1001 (SIPp) calls 1002 (SIPp): 407, 180, 200 with the switch's SDP, RTP via the switch, BYE, CDR."""
    sw = h.sw
    probe = h.probe(echo=True)  # 1002's media: records what the switch sends, echoes it back
    callee = h.callee("1002", "uas_answer.xml", keys={"sdp_port": probe.port})
    caller = h.caller("uac_call.xml", "1002", duration_ms=5000, pcap=speech["a"].pcap)
    assert_ok(caller, callee)

    # the caller's answer names the switch's media, not the callee's
    assert caller.values("answer_ip") == [LOOPBACK], caller.logs()
    answer_port = int(caller.values("answer_port")[0])
    assert in_range(answer_port, sw) and answer_port != probe.port, (answer_port, sw.rtp_ports)
    assert caller.values("answer_pt") == ["0"], caller.logs()
    # the callee got an INVITE to its registered contact, from 1001, offering the switch's other leg
    invites = received(callee, "INVITE ")
    assert invites and invites[0].startswith(f"INVITE sip:1002@{LOOPBACK}:{callee.port}"), invites[:1]
    assert "1001" in (header(invites[0], "From") or ""), invites[0]
    offer_port = int(callee.values("offer_port")[0])
    assert in_range(offer_port, sw) and offer_port not in (answer_port, caller.media_port), (
        offer_port,
        answer_port,
    )
    assert f"c=IN IP4 {LOOPBACK}" in body(invites[0]), invites[0]

    # RTP reached the callee from the switch's B-leg port, and it is the caller's speech
    sources = probe.sources()
    assert sources.get((LOOPBACK, offer_port), 0) >= 150, f"RTP at the callee by source: {sources}"
    assert set(sources) == {(LOOPBACK, offer_port)}, f"RTP from elsewhere than the switch's B leg: {sources}"
    score = similarity(probe.audio_from((LOOPBACK, offer_port)), speech["a"].pcm)
    assert score > MIN_SIMILARITY, f"caller's speech at the callee: similarity {score:.3f}"

    rows = h.cdr()
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["caller"], row["callee"], row["route_target"]) == ("1001", "1002", "extension"), row
    assert row["disposition"] == "answered" and row["hangup_side"] == "caller", row
    assert 4.0 <= float(row["billable"]) <= 8.0, row  # -d 5000 between ACK and BYE
    assert float(row["duration"]) >= float(row["billable"]), row
    assert all(row[k].endswith("Z") for k in ("start", "answer", "end")), row  # ISO 8601 UTC
    assert when(row["start"]) <= when(row["answer"]) <= when(row["end"]), row
    assert abs(when(row["end"]) - when(row["answer"]) - float(row["billable"])) < 0.01, row
    rec = recording_of(row, sw)
    left, right = (
        aligned_similarity(rec[:, 0], speech["a"].pcm),
        aligned_similarity(rec[:, 1], speech["a"].pcm),
    )
    # left: what the caller sent; right: what the callee sent (its probe echoed the caller)
    assert left > MIN_SIMILARITY and right > MIN_SIMILARITY, f"recording: left {left:.3f}, right {right:.3f}"
    # both media legs were given back: their ports can be bound again
    deadline = time.monotonic() + 3
    while not all(peers._bindable(p, [socket.SOCK_DGRAM]) for p in (answer_port, offer_port)):
        assert time.monotonic() < deadline, (
            f"RTP ports {answer_port}/{offer_port} still in use after the call"
        )
        time.sleep(0.1)
    stop_cleanly(sw)


def test_recording_keeps_the_audio_of_a_200ms_stall(h: Harness, speech: dict[str, Speech]) -> None:
    """A 200 ms stall of the switch (GC pause, slow disk, busy CPU: here SIGSTOP) loses no audio.

    The packets wait in the kernel's socket buffer meanwhile; the callee gets all of them, and the
    recording must not drop the stalled stretch either (aligned as one piece, not window by window).
    """
    sw = h.sw
    probe = h.probe(echo=True)
    callee = h.callee("1002", "uas_answer.xml", keys={"sdp_port": probe.port})
    caller = h.caller("uac_call.xml", "1002", duration_ms=6500, pcap=speech["a"].pcap)
    assert caller.wait_value("acked", timeout=10) == "1", caller.describe()
    time.sleep(2.0)  # mid-sentence
    os.kill(sw.pid, signal.SIGSTOP)
    try:
        time.sleep(0.2)
    finally:
        os.kill(sw.pid, signal.SIGCONT)
    assert_ok(caller, callee)
    assert len(probe.packets) >= len(speech["a"].rtp), (
        f"{len(probe.packets)} of {len(speech['a'].rtp)} forwarded"
    )
    assert similarity(probe.audio_from(), speech["a"].pcm) > 0.95
    rows = h.cdr()
    assert len(rows) == 1 and rows[0]["disposition"] == "answered", rows
    rec = recording_of(rows[0], sw)
    left = similarity(rec[:, 0], speech["a"].pcm)
    assert left > 0.95, (
        f"the recording lost audio around the stall: left channel vs the caller's speech {left:.3f} "
        f"(per 0.5 s piece, each aligned alone: {aligned_similarity(rec[:, 0], speech['a'].pcm):.3f})"
    )
    stop_cleanly(sw)


def test_parallel_fork_first_answer_wins(h: Harness, speech: dict[str, Speech]) -> None:
    """1002 registered from two phones: both ring, the first to answer gets the call, the other a CANCEL."""
    answering = h.callee("1002", "uas_answer.xml")
    ringing = h.callee("1002", "uas_ring.xml")
    assert len(h.sw.wait_registrations(2)) == 2
    caller = h.caller("uac_call.xml", "1002", duration_ms=1500, pcap=speech["a"].pcap)
    assert_ok(caller, answering, ringing)
    assert received(answering, "INVITE ") and received(answering, "BYE "), answering.logs()
    assert ringing.values("cancel_branch") == ringing.values("invite_branch"), ringing.logs()
    assert ringing.values("ack_487") == ["1"] and not received(ringing, "BYE "), ringing.logs()
    rows = h.cdr()
    assert len(rows) == 1 and rows[0]["disposition"] == "answered", rows
    stop_cleanly(h.sw)


def test_hostile_call_id_cannot_escape_the_recordings_folder(h: Harness, speech: dict[str, Speech]) -> None:
    """The Call-ID (caller-chosen; "/" and "." are legal in it) is a field of the recording path."""
    sw = h.sw
    callee = h.callee("1002", "uas_answer.xml")
    caller = h.caller(
        "uac_call.xml",
        "1002",
        duration_ms=1000,
        pcap=speech["a"].pcap,
        extra=["-cid_str", "../../../../escaped-%u-%p"],
    )
    assert_ok(caller, callee)
    rows = h.cdr()
    assert len(rows) == 1 and rows[0]["call_id"].startswith("../../../../escaped-"), rows
    recordings = (sw.data_dir / "recordings").resolve()
    path = Path(rows[0]["recording_path"])
    path = (path if path.is_absolute() else sw.data_dir / path).resolve()
    assert path.is_relative_to(recordings) and path.is_file(), f"recording at {path}, outside {recordings}"
    strays = [p for p in h.folder.rglob("*escaped*") if not p.resolve().is_relative_to(recordings)]
    assert not strays, strays
    stop_cleanly(sw)


def test_callee_hangs_up_and_media_flows_both_ways(h: Harness, speech: dict[str, Speech]) -> None:
    """1002 talks (probe) and hangs up after 4 s; the caller echoes: 1002 hears itself via the switch."""
    sw = h.sw
    probe = h.probe()
    callee = h.callee("1002", "uas_bye.xml", duration_ms=4000, keys={"sdp_port": probe.port})
    caller = h.caller("uac_wait_bye.xml", "1002", rtp_echo=True)
    offer = callee.wait_value("offer_port", timeout=10)
    assert offer is not None, callee.describe()
    switch_b = (LOOPBACK, int(offer))
    probe.play(switch_b, speech["b"].rtp)  # B -> switch -> A (SIPp echoes) -> switch -> B
    assert_ok(caller, callee)
    assert caller.values("peer_bye") == ["1"] and callee.values("bye_ok") == ["1"]
    byes = received(caller, "BYE ")
    assert len(byes) >= 1 and "1001" in (header(byes[0], "To") or ""), byes
    back = probe.audio_from(switch_b)
    score = similarity(back, speech["b"].pcm)
    assert score > MIN_SIMILARITY, f"callee's speech after a round trip through the caller: {score:.3f} "
    rows = h.cdr()
    assert len(rows) == 1, rows
    assert rows[0]["disposition"] == "answered" and rows[0]["hangup_side"] == "callee", rows
    assert 3.0 <= float(rows[0]["billable"]) <= 7.0, rows
    stop_cleanly(sw)


def test_caller_cancels_while_ringing(h: Harness) -> None:
    callee = h.callee("1002", "uas_ring.xml")
    caller = h.caller("uac_cancel.xml", "1002")
    assert_ok(caller, callee)
    assert caller.values("cancel_ok") == ["1"] and caller.values("final") == ["487"], caller.logs()
    # the switch CANCELled its own INVITE (same branch), and ACKed the callee's 487
    assert callee.values("cancel_branch") == callee.values("invite_branch"), callee.logs()
    assert callee.values("ack_487") == ["1"], callee.logs()
    rows = h.cdr()
    assert len(rows) == 1 and rows[0]["disposition"] == "cancelled", rows
    assert rows[0]["answer"] == "" and float(rows[0]["billable"]) == 0.0, rows
    stop_cleanly(h.sw)


def test_busy_callee(h: Harness) -> None:
    callee = h.callee("1002", "uas_busy.xml")
    caller = h.caller("uac_busy.xml", "1002")
    assert_ok(caller, callee)
    assert caller.values("final") == ["486"] and callee.values("ack_486") == ["1"]
    rows = h.cdr()
    assert len(rows) == 1, rows
    assert (rows[0]["disposition"], rows[0]["sip_code"]) == ("busy", "486"), rows
    assert float(rows[0]["billable"]) == 0.0, rows
    stop_cleanly(h.sw)


def test_no_answer_times_out(h: Harness) -> None:
    callee = h.callee("1002", "uas_ring.xml")
    caller = h.caller("uac_noanswer.xml", "1002")
    assert_ok(caller, callee)
    assert caller.values("final") == ["480"], caller.logs()
    rang = int(caller.values("final_ms")[0]) - int(caller.values("ringing_ms")[0])
    assert RING_TIMEOUT_S * 1000 - 500 <= rang <= RING_TIMEOUT_S * 1000 + 2500, (
        f"480 after {rang} ms of ringing"
    )
    # the switch CANCELled the callee itself, and ACKed its 487
    assert callee.values("cancel_branch") == callee.values("invite_branch"), callee.logs()
    assert callee.values("ack_487") == ["1"], callee.logs()
    rows = h.cdr()
    assert len(rows) == 1 and rows[0]["disposition"] == "no-answer", rows
    stop_cleanly(h.sw)


def test_hold_and_resume_by_reinvite(h: Harness, speech: dict[str, Speech]) -> None:
    callee = h.callee("1002", "uas_answer.xml")
    caller = h.caller("uac_hold.xml", "1002", duration_ms=1000, pcap=speech["a"].pcap)
    assert_ok(caller, callee)
    oks = {header(m, "CSeq"): m for m in received(caller, "SIP/2.0 200")}
    hold, resume = oks.get("3 INVITE"), oks.get("4 INVITE")
    assert hold is not None and resume is not None, list(oks)
    assert direction(body(hold)) in ("recvonly", "inactive"), hold
    assert direction(body(resume)) == "sendrecv", resume
    first = oks["2 INVITE"]
    m_first = re.search(r"(?m)^m=audio (\d+)", body(first))
    m_resume = re.search(r"(?m)^m=audio (\d+)", body(resume))
    assert m_first and m_resume and m_first.group(1) == m_resume.group(1), "the switch moved its media port"
    # RFC 3264 §8: a changed SDP carries a higher o= version
    versions = [sdp_version(body(m)) for m in (first, hold, resume)]
    assert versions[0] < versions[1] < versions[2], versions
    rows = h.cdr()
    assert len(rows) == 1 and rows[0]["disposition"] == "answered", rows
    stop_cleanly(h.sw)


def test_blind_transfer_by_refer(h: Harness, speech: dict[str, Speech]) -> None:
    """1001 calls 1002; 1002 REFERs the call to 1003; 1001 ends up talking to 1003."""
    sw = h.sw
    probe_c = h.probe(echo=True)
    target = f"sip:1003@{LOOPBACK}:{sw.port}"
    transferor = h.callee("1002", "uas_refer.xml", duration_ms=1500,
                          keys={"refer_to": target, "referred_by": f"sip:1002@{LOOPBACK}:{sw.port}"})  # fmt: skip
    target_ua = h.callee("1003", "uas_answer.xml", keys={"sdp_port": probe_c.port})
    caller = h.caller("uac_call.xml", "1002", duration_ms=7000, pcap=speech["a"].pcap)
    assert_ok(caller, transferor, target_ua)

    assert transferor.values("refer_accepted") == ["1"], transferor.logs()
    frags, states = transferor.values("notify_frag"), transferor.values("notify_state")
    assert frags and frags[0] == "100" and frags[-1] == "200", transferor.logs()
    assert states[-1] == "terminated" and all(s == "active" for s in states[:-1]), transferor.logs()
    for notify in received(transferor, "NOTIFY "):
        assert (header(notify, "Event") or "").lower().startswith("refer"), notify
        assert (header(notify, "Content-Type") or "").lower().startswith("message/sipfrag"), notify
    # the caller's dialog was never touched by the transfer: its BYE went to 1003
    assert received(target_ua, "BYE ") and target_ua.values("peer_bye") == ["1"], target_ua.logs()
    invites = received(target_ua, "INVITE ")
    assert invites and invites[0].startswith(f"INVITE sip:1003@{LOOPBACK}:{target_ua.port}"), invites[:1]
    offer_c = (LOOPBACK, int(target_ua.values("offer_port")[0]))
    assert probe_c.sources().get(offer_c, 0) >= 50, probe_c.sources()
    score = similarity(probe_c.audio_from(offer_c), speech["a"].pcm)
    assert score > MIN_SIMILARITY, f"caller's speech at the transfer target: {score:.3f}"
    rows = h.cdr()
    assert any(r["disposition"] == "answered" for r in rows), rows
    stop_cleanly(sw)


# ---------------------------------------------------------------- raw UDP: no call without auth


def _invite(port: int, local_port: int, *, call_id: str, cseq: int = 1, branch: str | None = None,
            auth: str | None = None, sdp_body: str | None = None, number: str = "1002") -> bytes:  # fmt: skip
    sdp_text = sdp_body if sdp_body is not None else (
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )  # fmt: skip
    lines = [
        f"INVITE sip:{number}@{LOOPBACK}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch={branch or f'z9hG4bKraw{call_id}{cseq}'};rport",
        f"From: <sip:1001@{LOOPBACK}:{port}>;tag=raw-{call_id}",
        f"To: <sip:{number}@{LOOPBACK}:{port}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} INVITE",
        f"Contact: <sip:1001@{LOOPBACK}:{local_port}>",
        "Max-Forwards: 70",
        *([f"Proxy-Authorization: {auth}"] if auth else []),
        "Content-Type: application/sdp",
        f"Content-Length: {len(sdp_text.encode())}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + sdp_text).encode()


def _ack_for(resp: bytes, port: int, number: str = "1002") -> bytes:
    """ACK for a non-2xx final response (same branch as the INVITE, To with the response's tag)."""
    hv = {n: peers.header_values(resp, n)[0] for n in ("Via", "From", "To", "Call-ID", "CSeq")}
    seq = hv["CSeq"].split()[0]
    return (f"ACK sip:{number}@{LOOPBACK}:{port} SIP/2.0\r\nVia: {hv['Via']}\r\nFrom: {hv['From']}\r\n"
            f"To: {hv['To']}\r\nCall-ID: {hv['Call-ID']}\r\nCSeq: {seq} ACK\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()  # fmt: skip


def test_invite_without_valid_auth_or_malformed_makes_no_call(h: Harness) -> None:
    sw = h.sw
    # 1002 registered at a socket that must never see an INVITE
    phone_port = peers.free_port()
    assert peers.register_contact(sw.port, "1002", "pw1002", contact_port=phone_port) == 200
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        phone.bind((LOOPBACK, phone_port))
        s.bind((LOOPBACK, 0))
        lp = s.getsockname()[1]

        def exchange(data: bytes, timeout: float = 3.0) -> tuple[int, bytes]:
            status, raw = peers.sip_udp_exchange(sw.port, data, sock=s, timeout=timeout)
            if status >= 300 and peers.header_values(raw, "Call-ID"):
                s.sendto(_ack_for(raw, sw.port), (LOOPBACK, sw.port))
            return status, raw

        def authenticated(call_id: str, *, password: str = "pw1001", number: str = "1002",
                          sdp_body: str | None = None) -> tuple[int, bytes]:  # fmt: skip
            """INVITE -> 407 (must challenge) -> INVITE with Proxy-Authorization -> final (ACKed)."""
            status, raw = exchange(_invite(sw.port, lp, call_id=call_id, number=number))
            assert status == 407, raw
            challenge = peers.header_values(raw, "Proxy-Authenticate")
            assert challenge and challenge[0].startswith("Digest"), raw
            uri = f"sip:{number}@{LOOPBACK}:{sw.port}"
            auth = peers.digest_authorization(challenge[0], "1001", password, "INVITE", uri)
            invite = _invite(
                sw.port, lp, call_id=call_id, cseq=2, auth=auth, sdp_body=sdp_body, number=number
            )
            return exchange(invite)

        # wrong password: challenged again (or refused), never forwarded
        status, raw = authenticated("wrong-password", password="not-the-password")
        assert status in (401, 403, 407), raw
        # malformed: CSeq not a number -> 400; no Call-ID -> 400 or silence
        broken = _invite(sw.port, lp, call_id="broken-1").replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
        status, raw = exchange(broken)
        assert status == 400, raw
        with contextlib.suppress(TimeoutError):
            status, raw = exchange(re.sub(rb"Call-ID: [^\r]*\r\n", b"", _invite(sw.port, lp, call_id="x")), 1)
            assert status == 400, raw
        # authenticated, but the SDP is garbage: refused, never forwarded
        status, raw = authenticated("bad-sdp", sdp_body="this is not SDP\r\n")
        assert status in (400, 488), raw
        # authenticated, to an account that is not registered, and to a number no route matches
        status, raw = authenticated("not-registered", number="1004")
        assert status in (404, 480), raw
        status, raw = authenticated("no-route", number="12")
        assert status in (404, 484), raw

        phone.settimeout(0.5)
        try:
            data, _ = phone.recvfrom(65535)
        except TimeoutError:
            data = b""
        assert not data.startswith(b"INVITE"), f"the callee got an INVITE:\n{data.decode(errors='replace')}"
        assert sw.proc is not None and sw.proc.poll() is None, sw.log()[-2000:]
        rows = sw.cdr()
        assert not any(r["disposition"] == "answered" for r in rows), rows
    finally:
        s.close()
        phone.close()
    stop_cleanly(sw)


# ---------------------------------------------------------------- baresip to baresip


def test_baresip_calls_baresip_speech_both_ways(h: Harness, speech: dict[str, Speech]) -> None:
    """The acceptance test: two real phones talk through the switch; each hears the other; CDR; recording."""
    peers.require_tools("baresip")
    sw, folder = h.sw, h.folder
    talk_s = 8.0
    phones = {}
    for user, clip, answer in (("1001", "a", False), ("1002", "b", True)):
        mic = speech[clip].padded_wav(folder / f"mic-{user}.wav", 60)
        ua = Baresip(folder / f"home-{user}", LOOPBACK, sw.port, user, PASSWORDS[user], answer=answer,
                     mic_wav=mic, timeout=40)  # fmt: skip
        h.phones.append(ua)
        phones[user] = ua.start()
    a, b = phones["1001"], phones["1002"]
    for ua in (a, b):
        ok, detail = ua.wait_registered(timeout=10)
        assert ok, f"baresip did not register: {detail}\n{ua.log()[-2000:]}"
    assert len(sw.wait_registrations(2)) == 2

    start = a.dial("1002")
    ev = a.wait_event({"CALL_ESTABLISHED", "CALL_CLOSED"}, 10, start)
    assert ev is not None and ev["type"] == "CALL_ESTABLISHED", (
        f"call not established: {ev}\nA:\n{a.log()[-2000:]}\nB:\n{b.log()[-2000:]}\nswitch:\n{sw.log()[-3000:]}"
    )
    established = time.monotonic()
    idx = a.events.index(ev) + 1
    early = a.wait_event({"CALL_CLOSED"}, talk_s, idx)
    assert early is None, f"call closed after {time.monotonic() - established:.1f} s: {early}"
    a.hangup()
    assert a.wait_event({"CALL_CLOSED"}, 5, idx) is not None, a.log()[-2000:]
    assert b.wait_event({"CALL_CLOSED"}, 5) is not None, f"1002 never saw the BYE:\n{b.log()[-2000:]}"
    call_s = time.monotonic() - established
    for ua in (a, b):
        ua.quit()  # closes the sndfile dumps

    heard = {}
    for user, ua in phones.items():
        dumps = ua.recordings()["received"]
        assert dumps, f"{user}: no received-audio dump in {ua.audio_dir}: {list(ua.audio_dir.iterdir())}"
        heard[user] = read_wav(dumps[-1])[:, 0]
    a_hears_b = aligned_similarity(heard["1001"], speech["b"].pcm)
    b_hears_a = aligned_similarity(heard["1002"], speech["a"].pcm)
    assert a_hears_b > MIN_SIMILARITY and b_hears_a > MIN_SIMILARITY, (
        f"1001 hears 1002: {a_hears_b:.3f}; 1002 hears 1001: {b_hears_a:.3f}"
    )

    rows = h.cdr()
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["caller"], row["callee"], row["disposition"], row["hangup_side"]) == (
        "1001", "1002", "answered", "caller",
    ), row  # fmt: skip
    assert float(row["billable"]) > 0 and abs(float(row["billable"]) - call_s) < 2.0, (row, call_s)
    assert float(row["billable"]) <= float(row["duration"]) < call_s + 3.0, (row, call_s)  # + ringing
    rec = recording_of(row, sw)
    left, right = (
        aligned_similarity(rec[:, 0], speech["a"].pcm),
        aligned_similarity(rec[:, 1], speech["b"].pcm),
    )
    assert left > MIN_SIMILARITY and right > MIN_SIMILARITY, f"recording: left {left:.3f}, right {right:.3f}"
    stop_cleanly(sw)
