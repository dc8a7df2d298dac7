"""The day bench's media generator: every caller's RTP (G.711 + RFC 4733 keys) from one process.

    python -m bench.loadgen --spec SPEC.json --out DIR [--max-seconds S]

SIPp does the callers' signalling only; the SDP of each call points at this process: one UDP socket
per flow type (quote, balance, ...). Each socket uses batched ``recvmmsg``/``sendmmsg``
(:class:`MmsgSocket`) so a few thousand calls cost a few system calls per 20 ms tick.

- A call is a stream the switch sends to a flow socket, told apart by (source port, SSRC): each
  switch leg has its own port in per-leg mode and its own SSRC in any mode. The call's script starts
  at its first packet (about the answer: the IVR speaks at once).
- Every tick (20 ms) each call gets one 172-byte packet back to the switch's address: G.711 u-law
  (a 500 Hz tone at about -20 dBFS) or, at the scripted times, RFC 4733 events (100 ms: five packets,
  the end packet three times, then 100 ms of audio). Event packets carry RTP padding up to the
  audio packets' length (RFC 3550 5.1), so one ``sendmmsg`` with one length sends every row.
- A call ends when the switch has sent nothing to it for ``IDLE_S`` or its flow's hold time (plus a
  margin) is over; late packets of an ended stream are ignored.
- Send pacing of the switch: for every audio packet it sends, the kernel's arrival time
  (SO_TIMESTAMPNS) minus its slot from the RTP timestamp, ``arrival - (first arrival + (ts -
  ts0) / 8000)``; :func:`lateness_ms` makes that relative to the stream's best packet. The records
  (call, second, offset) go to ``DIR/pacing.npz`` at the end and on SIGUSR1.

Protocol with the bench (stdout, one JSON object per line): ``{"hello": {"ports": {flow: port},
"pid": PID}}`` first, then ``{"tick": {...}}`` every second, and ``{"summary": {...}}`` after SIGTERM
(or ``--max-seconds``).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from softswitch.media.mmsg import MmsgSocket

TICK = 0.020
FRAME = 160
PACKET = 172  # 12 header + 160 audio; event packets are padded to this length
TE_PT = 101
EVENT_TICKS = 5  # 100 ms of event
END_REPEATS = 2  # the end packet is sent three times: once in the event, then two more ticks
KEY_TICKS = 10  # 200 ms per key (event + end repeats + audio gap)
IDLE_S = 3.0
HOLD_MARGIN_S = 5.0
_DIGIT = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


# ---------------------------------------------------------------- the scripts


@dataclass(frozen=True)
class Plan:
    """Per tick after the answer: the event code (-1: audio), packet number in the event (1..7),
    the tick the event started (for its RTP timestamp), and whether a key starts there."""

    event: np.ndarray
    k: np.ndarray
    start: np.ndarray
    key_start: np.ndarray
    digits: int

    @property
    def ticks(self) -> int:
        return len(self.event)


def make_plan(script: Sequence[tuple[float, str]]) -> Plan:
    """The tick plan of a script of (seconds after the answer, keys); raises ValueError on overlap."""
    starts: dict[int, str] = {}
    last_end = -1
    for at, keys in sorted(script):
        tick = round(at / TICK)
        for key in keys:
            if key not in _DIGIT:
                raise ValueError(f"not a DTMF key: {key!r} in {keys!r}")
            if tick < last_end:
                raise ValueError(f"keys overlap at {tick * TICK:.2f} s ({keys!r})")
            starts[tick] = key
            last_end = tick + KEY_TICKS
            tick += KEY_TICKS
    n = (max(starts) + KEY_TICKS) if starts else 1
    event = np.full(n, -1, np.int16)
    k = np.zeros(n, np.int16)
    start = np.zeros(n, np.int64)
    key_start = np.zeros(n, np.int8)
    for tick, key in starts.items():
        for i in range(EVENT_TICKS + END_REPEATS):
            event[tick + i] = _DIGIT[key]
            k[tick + i] = i + 1
            start[tick + i] = tick
        key_start[tick] = 1
    return Plan(event, k, start, key_start, len(starts))


def tone_frame() -> np.ndarray:
    """20 ms of a 500 Hz tone, u-law (ten whole periods: every frame is the same)."""
    from softswitch.codecs.g711 import ulaw_encode

    pcm = (3000 * np.sin(2 * np.pi * 500 * np.arange(FRAME) / 8000)).astype(np.int16)
    return np.asarray(ulaw_encode(pcm), dtype=np.uint8)


# ---------------------------------------------------------------- pacing


def lateness_ms(call: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Each packet's lateness (ms) relative to its stream's best packet.

    ``offset`` is arrival time minus the packet's slot from its RTP timestamp (any per-stream
    origin); the stream's smallest offset is its on-time reference.
    """
    if len(call) == 0:
        return np.zeros(0)
    _, inv = np.unique(call, return_inverse=True)
    best = np.full(inv.max() + 1, np.inf)
    np.minimum.at(best, inv, offset.astype(np.float64))
    return (offset.astype(np.float64) - best[inv]) * 1000.0


def pacing_summary(lateness: np.ndarray) -> dict[str, float | int | None]:
    if len(lateness) == 0:
        return {"packets": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    p50, p99 = np.percentile(lateness, [50, 99])
    return {"packets": len(lateness), "p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2),
            "max_ms": round(float(lateness.max()), 2)}  # fmt: skip


# ---------------------------------------------------------------- one flow's socket


@dataclass
class FlowSocket:
    """The calls of one flow type: one socket, one row of the send buffer per call (rows 0..n-1)."""

    name: str
    index: int
    plan: Plan
    hold_s: float
    pacing: bool
    capacity: int
    host: str = "127.0.0.1"
    n: int = 0
    rows: dict[int, int] = field(default_factory=dict)  # stream key -> row
    dead: set[int] = field(default_factory=set)
    calls: int = 0
    ended: int = 0
    digits_sent: int = 0

    def __post_init__(self) -> None:
        self.sock = MmsgSocket(self.host, 0, batch=self.capacity, size=256)
        self.port = int(self.sock.address[1])
        c = self.capacity
        self.key = np.zeros(c, np.int64)
        self.gid = np.zeros(c, np.int64)
        self.start_tick = np.zeros(c, np.int64)
        self.seq = np.zeros(c, np.int64)
        self.ts_base = np.zeros(c, np.int64)
        self.ts0 = np.zeros(c, np.int64)
        self.first_rx = np.zeros(c, np.float64)
        self.last_rx = np.zeros(c, np.float64)
        self.tx_rows = 0
        self.sock.tx[:, 0] = 0x80

    def new_call(self, key: int, port: int, ts0: int, arrival: float, tick: int, gid: int, now: float) -> int:
        if self.n >= self.capacity:
            return -1
        r = self.n
        self.n += 1
        self.rows[key] = r
        rng = np.random.default_rng(gid)
        self.key[r], self.gid[r], self.start_tick[r] = key, gid, tick
        self.seq[r] = int(rng.integers(0, 1 << 16))
        self.ts_base[r] = int(rng.integers(0, 1 << 32))
        self.ts0[r], self.first_rx[r], self.last_rx[r] = ts0, arrival, now
        tx = self.sock.tx
        tx[r, 8:12] = np.frombuffer(struct.pack("!I", int(rng.integers(1, 1 << 32))), np.uint8)
        names = self.sock.tx_names
        names[r, :] = 0
        names[r, :8] = np.frombuffer(
            struct.pack("<H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(self.host),
            np.uint8,
        )
        self.calls += 1
        return r

    def end_call(self, r: int) -> None:
        """Drop row r, moving the last row into its place."""
        last = self.n - 1
        key = int(self.key[r])
        self.rows.pop(key, None)
        self.dead.add(key)
        if r != last:
            for arr in (self.key, self.gid, self.start_tick, self.seq, self.ts_base, self.ts0, self.first_rx,
                        self.last_rx):  # fmt: skip
                arr[r] = arr[last]
            self.sock.tx[r] = self.sock.tx[last]
            self.sock.tx_names[r] = self.sock.tx_names[last]
            self.rows[int(self.key[r])] = r
        self.n = last
        self.ended += 1

    def reap(self, now: float, tick: int) -> None:
        """End the calls the switch stopped sending to, or past their hold time."""
        if not self.n:
            return
        limit = round((self.hold_s + HOLD_MARGIN_S) / TICK)
        done = np.flatnonzero(
            (now - self.last_rx[: self.n] > IDLE_S) | (tick - self.start_tick[: self.n] > limit)
        )
        for r in sorted(done.tolist(), reverse=True):
            self.end_call(r)

    def send(self, tick: int, audio: np.ndarray) -> int:
        n = self.n
        if not n:
            return 0
        plan = self.plan
        j = tick - self.start_tick[:n]
        inside = (j >= 0) & (j < plan.ticks)
        jj = np.clip(j, 0, plan.ticks - 1)
        ev = np.where(inside, plan.event[jj], -1)
        is_ev = ev >= 0
        self.digits_sent += int(plan.key_start[jj][inside].sum())
        seq = (self.seq[:n] + 1) & 0xFFFF
        self.seq[:n] = seq
        ts = (self.ts_base[:n] + FRAME * np.where(is_ev, plan.start[jj], j)) & 0xFFFFFFFF
        tx = self.sock.tx
        k = plan.k[jj]
        tx[:n, 0] = np.where(is_ev, 0xA0, 0x80)  # V=2, padding on events
        tx[:n, 1] = np.where(is_ev, TE_PT | np.where(k == 1, 0x80, 0), 0)
        tx[:n, 2] = seq >> 8
        tx[:n, 3] = seq & 0xFF
        for b in range(4):
            tx[:n, 4 + b] = (ts >> (24 - 8 * b)) & 0xFF
        ev_rows = np.flatnonzero(is_ev)
        au_rows = np.flatnonzero(~is_ev)
        if len(au_rows):
            tx[au_rows, 12:PACKET] = audio
        if len(ev_rows):
            kk = k[ev_rows].astype(np.int64)
            end = kk >= EVENT_TICKS
            duration = FRAME * np.minimum(kk, EVENT_TICKS)
            tx[ev_rows, 12] = ev[ev_rows]
            tx[ev_rows, 13] = np.where(end, 0x80, 0) | 10  # E bit, volume -10 dBm0
            tx[ev_rows, 14] = duration >> 8
            tx[ev_rows, 15] = duration & 0xFF
            tx[ev_rows, 16 : PACKET - 1] = 0
            tx[ev_rows, PACKET - 1] = PACKET - 16  # padding count, including this byte
        return int(self.sock.send(n, PACKET))


# ---------------------------------------------------------------- the generator


class Generator:
    def __init__(self, spec: dict[str, Any], out: Path) -> None:
        self.out = out
        self.flows: list[FlowSocket] = []
        capacity = int(spec.get("capacity", 4096))
        for i, f in enumerate(spec["flows"]):
            plan = make_plan([(float(at), str(keys)) for at, keys in f["script"]])
            self.flows.append(FlowSocket(f["name"], i, plan, float(f["hold_s"]), bool(f.get("pacing", True)),
                                         capacity, spec.get("host", "127.0.0.1")))  # fmt: skip
        self.audio = tone_frame()
        self.stop = False
        self.dump = False
        self.gid = 0
        self.t_wall0 = time.time()
        cap = int(spec.get("records", 20_000_000))
        self.rec_call = np.zeros(cap, np.int32)
        self.rec_sec = np.zeros(cap, np.uint16)
        self.rec_off = np.zeros(cap, np.float32)
        self.rec_n = 0
        self.call_flow: list[int] = []
        self.rx_packets = 0
        self.tx_packets = 0
        self.bad = 0

    def receive(self, f: FlowSocket, tick: int, now: float) -> int:
        got = 0
        while True:
            n, _lens, ports, stamps = f.sock.recv()
            if n == 0:
                return got
            got += n
            rx = f.sock.rx[:n].astype(np.int64)
            ok = (rx[:, 0] & 0xC0) == 0x80
            self.bad += int((~ok).sum())
            pt = rx[:, 1] & 0x7F
            ssrc = rx[:, 8] << 24 | rx[:, 9] << 16 | rx[:, 10] << 8 | rx[:, 11]
            ts = rx[:, 4] << 24 | rx[:, 5] << 16 | rx[:, 6] << 8 | rx[:, 7]
            key = ports << 32 | ssrc
            uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
            rows_u = np.empty(len(uniq), np.int64)
            for i, k in enumerate(uniq.tolist()):
                r = f.rows.get(k)
                if r is None:
                    if k in f.dead or not ok[first[i]]:
                        r = -1
                    else:
                        r = f.new_call(
                            k, k >> 32, int(ts[first[i]]), float(stamps[first[i]]), tick, self.gid, now
                        )
                        if r >= 0:
                            self.gid += 1
                            self.call_flow.append(f.index)
                rows_u[i] = r
            live = rows_u >= 0
            f.last_rx[rows_u[live]] = now
            if not f.pacing:
                continue
            rows = rows_u[inv]
            use = (rows >= 0) & ok & ((pt == 0) | (pt == 8))
            if not use.any():
                continue
            r = rows[use]
            d = (ts[use] - f.ts0[r]) & 0xFFFFFFFF
            d = np.where(d >= 1 << 31, d - (1 << 32), d)  # a packet from before the first one
            off = stamps[use] - f.first_rx[r] - d / 8000.0
            m = min(len(r), len(self.rec_call) - self.rec_n)
            s = self.rec_n
            self.rec_call[s : s + m] = f.gid[r][:m]
            self.rec_sec[s : s + m] = np.clip(stamps[use][:m] - self.t_wall0, 0, 65535).astype(np.uint16)
            self.rec_off[s : s + m] = off[:m]
            self.rec_n += m

    def run(self, max_seconds: float) -> dict[str, Any]:
        poller = select.poll()
        for f in self.flows:
            poller.register(f.sock.fd, select.POLLIN)
        t0 = time.perf_counter()
        tick = 0
        next_report = 1.0
        while not self.stop:
            now_p = time.perf_counter() - t0
            if now_p > max_seconds:
                break
            now = time.time()
            for f in self.flows:
                self.rx_packets += self.receive(f, tick, now)
            due = tick * TICK
            if now_p >= due:
                behind = int(now_p / TICK) - tick
                if behind > 5:  # stalled: skip ahead instead of bursting
                    tick += behind
                for f in self.flows:
                    f.reap(now, tick)
                    self.tx_packets += f.send(tick, self.audio)
                tick += 1
            if self.dump:
                self.dump = False
                emit({"dumped": str(self.save())})
            if now_p >= next_report:
                next_report += 1.0
                emit({"tick": self.status(now_p)})
            wait_ms = max(0.0, (tick * TICK - (time.perf_counter() - t0)) * 1000)
            poller.poll(min(wait_ms, 5.0))
        return self.finish()

    def status(self, t: float) -> dict[str, Any]:
        return {
            "t": round(t, 1),
            "active": {f.name: f.n for f in self.flows},
            "calls": {f.name: f.calls for f in self.flows},
            "digits_sent": {f.name: f.digits_sent for f in self.flows},
            "rx": self.rx_packets, "tx": self.tx_packets,
        }  # fmt: skip

    def save(self) -> Path:
        n = self.rec_n
        path = self.out / "pacing.npz"
        tmp = self.out / "pacing.tmp.npz"
        np.savez(tmp, call=self.rec_call[:n], sec=self.rec_sec[:n], off=self.rec_off[:n],
                 call_flow=np.asarray(self.call_flow, np.int16), t_wall0=np.float64(self.t_wall0))  # fmt: skip
        tmp.replace(path)
        return path

    def finish(self) -> dict[str, Any]:
        n = self.rec_n
        self.save()
        summary = self.status(0.0)
        summary.update(
            records=n, records_full=n >= len(self.rec_call), bad_packets=self.bad,
            ended={f.name: f.ended for f in self.flows}, digits_per_call={f.name: f.plan.digits for f in self.flows},
            t_wall0=self.t_wall0,
        )  # fmt: skip
        for f in self.flows:
            f.sock.close()
        return summary


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--spec", required=True, help="JSON: {flows: [{name, script, hold_s, pacing}], capacity}")
    ap.add_argument("--out", required=True, help="folder for pacing.npz")
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    a = ap.parse_args(argv)
    spec = json.loads(Path(a.spec).read_text())
    gen = Generator(spec, Path(a.out))

    def stop(_sig: int, _frame: object) -> None:
        gen.stop = True

    def dump(_sig: int, _frame: object) -> None:
        gen.dump = True

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emit({"hello": {"ports": {f.name: f.port for f in gen.flows}, "pid": os.getpid()}})
    emit({"summary": gen.run(a.max_seconds)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
