"""Media engine bench: N legs play a prompt to a UDP sink and receive a stream back.

    python -m bench.media --legs 500 --duration 20 [--json] [--no-inband] [--record DIR]

The engine runs in its own process (so its CPU is measured alone, from
/proc); the load generator is one process with batched recvmmsg/sendmmsg
that sends a 20 ms G.711 stream to every leg and timestamps every packet the
engine sends with the kernel's receive time (SO_TIMESTAMPNS). Send-pacing
lateness is each packet's arrival minus its ideal slot on the 20 ms grid
(taken from its RTP timestamp), relative to the leg's best packet.
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

import numpy as np

FRAME = 160
TICK = 0.020
CLK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- engine side
async def serve(
    legs: int, remote: tuple[str, int], duration: float, inband: bool, record: str | None
) -> None:
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
    engine = MediaEngine(host="127.0.0.1", ports=(30000, 30000 + 4 * legs + 100), prompts=library,
                         recorder=recorder, capacity=legs + 8)  # fmt: skip
    engine.start()
    prompt = "welcome" if library.has("zh", "welcome") else sorted(library.names("zh"))[0]
    all_legs = []
    for i in range(legs):
        leg = engine.create_leg()
        leg.configure(codec="pcmu", telephone_event_pt=101, remote=remote)
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
    from bench.mmsg import MmsgSocket

    legs = args.legs
    gen = MmsgSocket(batch=max(64, legs), size=256)
    cmd = [sys.executable, "-m", "bench.media", "--serve", "--legs", str(legs), "--remote",
           f"{gen.address[0]}:{gen.address[1]}", "--duration", str(args.duration + args.warmup + 2)]  # fmt: skip
    if not args.inband:
        cmd.append("--no-inband")
    if args.record:
        cmd += ["--record", args.record]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    hello = json.loads(proc.stdout.readline())
    ports = np.array(hello["ports"], dtype=np.int64)
    pid = hello["pid"]
    gen.set_destinations(ports)
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
            rx_leg[got : got + m] = port_index[src[:m]]
            raw = gen.rx[:m, 4:8].astype(np.int64)
            rx_ts[got : got + m] = raw[:, 0] << 24 | raw[:, 1] << 16 | raw[:, 2] << 8 | raw[:, 3]
            rx_time[got : got + m] = stamps[:m]
            got += m
        else:
            time.sleep(0.0005)
    cpu1, wall1 = cpu_seconds(pid), time.perf_counter()
    rss = rss_mb(pid)
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
    cpu = cpu1 - cpu0
    pairs = (pkts_in + pkts_out) / 2
    return {
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
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--legs", type=int, default=500)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds (after warm-up)")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--no-inband", dest="inband", action="store_false", help="no in-band DTMF detection")
    p.add_argument("--record", help="also record every leg into this folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--remote", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        host, port = args.remote.rsplit(":", 1)
        import uvloop  # the engine needs uvloop: stdlib asyncio reads one datagram per wake-up

        uvloop.run(serve(args.legs, (host, int(port)), args.duration, args.inband, args.record))
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
