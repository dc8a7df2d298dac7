"""Media engine bench: N legs play a prompt to a UDP sink and receive a stream back.

    python -m bench.media --legs 500 --duration 20 [--json] [--no-inband] [--record DIR] [--workers N]
                          [--rtp-mode per_leg|shared]

The engine runs in its own process (so its CPU is measured alone, from
/proc); the load generator is one process with batched recvmmsg/sendmmsg
that sends a 20 ms G.711 stream to every leg and timestamps every packet the
engine sends with the kernel's receive time (SO_TIMESTAMPNS). Send-pacing
lateness is each packet's arrival minus its ideal slot on the 20 ms grid
(taken from its RTP timestamp), relative to the leg's best packet.

Every leg has its own remote address, as real phones do: the generator's one
socket poses as leg i at 127.1.x.y (IP_PKTINFO sets each packet's source
address and tells which address a reply went to). So ``--rtp-mode shared``
(one engine port for all legs, demultiplexed by remote address) is measured
with the same generator as the default per-leg mode.

``--workers N`` runs the legs in N media worker processes (RemoteMediaEngine, as
``softswitch run --media-workers N``): the bench's engine process is then the
parent driving them over msgpack, and the CPU of the parent and of the workers is
reported separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FRAME = 160
TICK = 0.020
CLK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- engine side
def leg_ip(i: int) -> int:
    """The generator's address for leg i (an int): 127.1.0.1, 127.1.0.2, ..."""
    return (127 << 24 | 1 << 16) + 1 + i


async def serve(
    legs: int,
    remote: tuple[str, int],
    duration: float,
    inband: bool,
    record: str | None,
    rtp_mode: str,
    first_port: int = 30000,
) -> None:
    import socket

    from softswitch.media.engine import MediaEngine
    from softswitch.media.prompts import PromptLibrary
    from softswitch.media.recorder import RecorderThread
    from softswitch.runtime import tune_gc

    root = Path(__file__).resolve().parent.parent / "prompts"
    library = PromptLibrary(root)
    library.load(languages=("zh",))
    recorder = RecorderThread() if record else None
    if recorder is not None:
        recorder.start()
    engine = MediaEngine(host="127.0.0.1", ports=(first_port, first_port + 4 * legs + 100), prompts=library,
                         recorder=recorder, capacity=legs + 8, rtp_mode=rtp_mode)  # fmt: skip
    engine.start()
    prompt = "welcome" if library.has("zh", "welcome") else sorted(library.names("zh"))[0]
    all_legs = []
    for i in range(legs):
        leg = engine.create_leg()
        leg_remote = (socket.inet_ntoa(leg_ip(i).to_bytes(4, "big")), remote[1])
        leg.configure(codec="pcmu", telephone_event_pt=101, remote=leg_remote)
        leg.inband = inband
        engine._update_sets(leg)
        if record:
            leg.record(Path(record) / f"leg{i}.wav")
        all_legs.append(leg)

    def again(leg: object) -> None:
        fut = leg.play([prompt], barge_in=False)  # type: ignore[attr-defined]
        fut.add_done_callback(lambda _f: again(leg))

    for leg in all_legs:
        again(leg)
    tune_gc()  # as the switch does
    print(json.dumps({"ports": [leg.port for leg in all_legs], "pid": os.getpid()}), flush=True)
    await asyncio.sleep(duration)
    stats = engine.stats()
    stats["bad_packets"] = sum(leg.bad_packets for leg in all_legs)
    engine.stop()
    if recorder is not None:
        recorder.stop()
    print(json.dumps(stats), flush=True)


async def serve_workers(
    workers: int, legs: int, remote: tuple[str, int], duration: float, record: str | None
) -> None:
    """The same load with the legs in ``workers`` media worker processes."""
    from softswitch.media.leg import MediaError
    from softswitch.media.workers import RemoteMediaEngine
    from softswitch.runtime import tune_gc

    root = Path(__file__).resolve().parent.parent / "prompts"
    engine = RemoteMediaEngine(workers=workers, host="127.0.0.1", ports=(30000, 30000 + 4 * legs + 100 * workers),
                               prompts_root=root, languages=("zh",), recording=bool(record), capacity=legs + 8,
                               pool=min(64, legs))  # fmt: skip
    engine.start()
    await engine.wait_ready()
    all_legs: list[Any] = []
    while len(all_legs) < legs:
        try:
            leg = engine.create_leg()
        except MediaError:  # the workers make legs in advance, 64 at a time
            await asyncio.sleep(0.002)
            continue
        leg.configure(codec="pcmu", telephone_event_pt=101, remote=remote)
        if record:
            leg.record(Path(record) / f"leg{len(all_legs)}.wav")
        all_legs.append(leg)

    def again(leg: object) -> None:
        fut = leg.play(["welcome"], barge_in=False)  # type: ignore[attr-defined]
        fut.add_done_callback(lambda f: None if f.cancelled() else again(leg))

    for leg in all_legs:
        again(leg)
    tune_gc()
    hello = {"ports": [leg.port for leg in all_legs], "pid": os.getpid(), "worker_pids": engine.pids()}
    print(json.dumps(hello), flush=True)
    await asyncio.sleep(duration)
    per_worker = await engine.worker_stats()
    stats = {
        "tick_lateness_ms_p99": max(s["tick_lateness_ms_p99"] for s in per_worker),
        "legs_per_worker": [s["legs"] - s["pool"] for s in per_worker],
        "bad_packets": 0,
    }
    engine.stop()
    print(json.dumps(stats), flush=True)


# ------------------------------------------------------------- load generator
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(args: argparse.Namespace) -> dict[str, float]:
    from softswitch.media.mmsg import MmsgSocket

    legs = args.legs
    gen = MmsgSocket("0.0.0.0", batch=max(64, legs), size=256, pktinfo=True)
    cmd = [sys.executable, "-m", "bench.media", "--serve", "--legs", str(legs), "--remote",
           f"127.0.0.1:{gen.address[1]}", "--duration", str(args.duration + args.warmup + 2),
           "--rtp-mode", args.rtp_mode, "--first-port", str(args.first_port)]  # fmt: skip
    if not args.inband:
        cmd.append("--no-inband")
    if args.record:
        cmd += ["--record", args.record]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    hello = json.loads(proc.stdout.readline())
    ports = np.array(hello["ports"], dtype=np.int64)
    pid = hello["pid"]
    wpids = hello.get("worker_pids", [])
    gen.set_destinations(ports)
    gen.set_sources(np.array([leg_ip(i) for i in range(legs)], dtype=np.uint32))
    by_port = args.rtp_mode == "per_leg"  # shared: one engine port, legs known by our address they wrote to
    # the stream we send: RTP header + a quiet µ-law payload, one row per leg
    tx = gen.tx
    tx[:legs, 0] = 0x80
    tx[:legs, 1] = 0  # PCMU
    ssrc = (np.arange(legs, dtype=np.uint32) + 0x1000).astype(">u4").view(np.uint8).reshape(legs, 4)
    tx[:legs, 8:12] = ssrc
    tx[:legs, 12 : 12 + FRAME] = 0xFE

    port_index = np.full(65536, -1, dtype=np.int64)
    port_index[ports] = np.arange(legs)
    cap = int(legs * (args.duration + args.warmup + 3) / TICK) + 1000
    rx_leg = np.empty(cap, dtype=np.int64)
    rx_ts = np.empty(cap, dtype=np.int64)
    rx_time = np.empty(cap, dtype=np.float64)
    got = 0
    sent = 0
    start = time.perf_counter()
    t_measure = start + args.warmup
    t_end = t_measure + args.duration
    cpu0 = None
    k = 0
    measuring_from = 0
    while True:
        now = time.perf_counter()
        if now >= t_end:
            break
        if cpu0 is None and now >= t_measure:
            cpu0, wall0, got0, sent0 = cpu_seconds(pid), now, got, sent
            wcpu0 = [cpu_seconds(w) for w in wpids]
            measuring_from = got
        due = start + k * TICK
        if now >= due:
            seq = np.uint16(k & 0xFFFF)
            tx[:legs, 2] = seq >> 8
            tx[:legs, 3] = seq & 0xFF
            ts = np.uint32((k * FRAME) & 0xFFFFFFFF)
            tx[:legs, 4:8] = np.frombuffer(int(ts).to_bytes(4, "big"), np.uint8)
            sent += gen.send(legs, 12 + FRAME)
            k += 1
        n, _lens, src, stamps = gen.recv()
        if n:
            m = min(n, cap - got)
            if by_port:
                rx_leg[got : got + m] = port_index[src[:m]]
            else:
                leg_no = gen.rx_destinations(m).astype(np.int64) - leg_ip(0)
                rx_leg[got : got + m] = np.where((leg_no >= 0) & (leg_no < legs), leg_no, -1)
            raw = gen.rx[:m, 4:8].astype(np.int64)
            rx_ts[got : got + m] = raw[:, 0] << 24 | raw[:, 1] << 16 | raw[:, 2] << 8 | raw[:, 3]
            rx_time[got : got + m] = stamps[:m]
            got += m
        else:
            time.sleep(0.0005)
    cpu1, wall1 = cpu_seconds(pid), time.perf_counter()
    wcpu = [cpu_seconds(w) - c0 for w, c0 in zip(wpids, wcpu0, strict=True)]
    rss = rss_mb(pid) + sum(rss_mb(w) for w in wpids)
    out = proc.communicate(timeout=args.duration + 60)[0]
    engine_stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    gen.close()
    assert cpu0 is not None

    # pacing lateness from kernel arrival times and RTP timestamps (measurement window only)
    leg_ids = rx_leg[measuring_from:got]
    ok = leg_ids >= 0
    leg_ids, tsv, tv = leg_ids[ok], rx_ts[measuring_from:got][ok], rx_time[measuring_from:got][ok]
    lateness = np.zeros(0)
    if len(leg_ids):
        order = np.lexsort((tsv, leg_ids))
        leg_ids, tsv, tv = leg_ids[order], tsv[order], tv[order]
        first = np.r_[True, leg_ids[1:] != leg_ids[:-1]]
        base_ts = np.maximum.accumulate(np.where(first, np.arange(len(tsv)), 0))
        slot = ((tsv - tsv[base_ts]) & 0xFFFFFFFF) / FRAME  # ticks since the leg's first packet
        offset = tv - slot * TICK
        best = np.minimum.reduceat(offset, np.flatnonzero(first))
        lateness = (offset - np.repeat(best, np.diff(np.r_[np.flatnonzero(first), len(offset)]))) * 1000
    elapsed = wall1 - wall0
    pkts_in = sent - sent0
    pkts_out = got - got0
    parent_cpu = cpu1 - cpu0
    cpu = parent_cpu + sum(wcpu)
    pairs = (pkts_in + pkts_out) / 2
    workers = {}
    if wpids:
        workers = {
            "workers": len(wpids),
            "parent_cpu_percent": round(100 * parent_cpu / elapsed, 1),
            "workers_cpu_percent": [round(100 * c / elapsed, 1) for c in wcpu],
            "legs_per_worker": engine_stats.get("legs_per_worker"),
        }
    return {
        "rtp_mode": args.rtp_mode,
        "legs": legs,
        "seconds": round(elapsed, 2),
        "packets_per_s_to_engine": round(pkts_in / elapsed),
        "packets_per_s_from_engine": round(pkts_out / elapsed),
        "expected_per_s_each_way": round(legs / TICK),
        "engine_cpu_percent": round(100 * cpu / elapsed, 1),
        "engine_us_per_packet_pair": round(1e6 * cpu / pairs, 2) if pairs else float("nan"),
        "legs_per_core": round(legs / (cpu / elapsed), 0) if cpu else float("nan"),
        "pacing_lateness_ms_p50": round(float(np.percentile(lateness, 50)), 3)
        if len(lateness)
        else float("nan"),
        "pacing_lateness_ms_p99": round(float(np.percentile(lateness, 99)), 3)
        if len(lateness)
        else float("nan"),
        "pacing_lateness_ms_max": round(float(lateness.max()), 3) if len(lateness) else float("nan"),
        "engine_rss_mb": round(rss, 1),
        "engine_tick_lateness_ms_p99": round(engine_stats.get("tick_lateness_ms_p99", float("nan")), 3),
        "engine_bad_packets": engine_stats.get("bad_packets", 0),
        "engine_unmatched_packets": engine_stats.get("unmatched_packets", 0),
        "generator_send_failures": gen.send_errors + gen.send_dropped,
        **workers,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--legs", type=int, default=500)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds (after warm-up)")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--no-inband", dest="inband", action="store_false", help="no in-band DTMF detection")
    p.add_argument("--record", help="also record every leg into this folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--workers", type=int, default=0, help="run the legs in N media worker processes")
    p.add_argument("--rtp-mode", choices=("per_leg", "shared"), default="per_leg",
                   help="the engine's RTP sockets: a pair per leg, or one shared port with batched I/O")  # fmt: skip
    p.add_argument("--first-port", type=int, default=30000, help="the engine's RTP port range starts here")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--remote", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.workers and not args.inband:
        p.error("--no-inband is not available with --workers (in-band detection stays on)")
    if args.workers and args.rtp_mode != "per_leg":
        p.error("--rtp-mode shared is not available with --workers yet")
    if args.serve:
        host, port = args.remote.rsplit(":", 1)
        import uvloop  # the engine needs uvloop: stdlib asyncio reads one datagram per wake-up

        if args.workers:
            uvloop.run(serve_workers(args.workers, args.legs, (host, int(port)), args.duration, args.record))
        else:
            uvloop.run(
                serve(
                    args.legs,
                    (host, int(port)),
                    args.duration,
                    args.inband,
                    args.record,
                    args.rtp_mode,
                    args.first_port,
                )
            )
        return
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
