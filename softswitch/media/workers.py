"""The media engine in N worker processes, driven from the switch over msgpack on Unix sockets.

:class:`RemoteMediaEngine` (alias :data:`WorkerPool`) has the API of
:class:`~softswitch.media.engine.MediaEngine` that the B2BUA and the applications use
(``create_leg``, ``release``, ``bridge``, ``unbridge``, ``host``, ``start``, ``stop``,
``legs``); its legs are :class:`~softswitch.media.remote.RemoteLeg` proxies. Each worker
(``python -m softswitch.media.worker``) runs a real MediaEngine with its own event loop,
prompts and recorder thread, on its own slice of the RTP port range.

Protocol (msgpack arrays on a ``socketpair``; the parent never waits for a reply):

- parent -> worker: ``claim id`` · ``cfg id codec pt te host port`` · ``play id req prompts
  barge_in language`` · ``tone id name`` · ``stop id`` · ``collect id req max term first inter``
  · ``dtmf id req digits ms`` · ``digit id d source`` · ``record id rid path stereo fmt app`` ·
  ``stoprec id app`` · ``pause id`` · ``resume id`` · ``bridge a b`` · ``unbridge id`` ·
  ``release id`` · ``set name value`` · ``stats req`` · ``quit``
- worker -> parent: ``pool [[id, port, ssrc], ...]`` (legs made in advance, so that
  ``create_leg`` can answer with a port at once) · ``res req value`` · ``err req text`` ·
  ``cx req`` (cancelled) · ``ev id d|p|t ...`` (DigitEvent, PlaybackDone, RtpTimeout) ·
  ``rp rid pauses`` · ``rc rid duration pauses`` · ``rd rid error`` (recording file closed).

A worker that dies takes its legs with it: they get a :class:`WorkerDied` event (an
:class:`RtpTimeout`, so answered calls are hung up), their pending futures are cancelled,
later operations on them re-send the event, and the worker is started again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from .leg import Leg, MediaError
from .remote import Channel, RemoteLeg, RemoteRecording, WorkerDied

log = logging.getLogger("softswitch.media.workers")

__all__ = ["RemoteMediaEngine", "WorkerDied", "WorkerPool", "split_ports"]

POOL = 32  # legs each worker keeps bound in advance
RESPAWN_DELAY_S = 1.0  # doubled (up to RESPAWN_MAX_S) while a worker keeps dying young
RESPAWN_MAX_S = 30.0
YOUNG_S = 10.0


def split_ports(first: int, last: int, n: int) -> list[tuple[int, int]]:
    """Cut ``first..last`` into ``n`` ranges of whole RTP/RTCP pairs (even RTP port)."""
    start = first + (first & 1)
    pairs = (last - start + 1) // 2
    if pairs < n:
        raise ValueError(f"RTP port range {first}-{last} is too small for {n} media workers")
    out = []
    for i in range(n):
        a = start + 2 * (pairs * i // n)
        b = start + 2 * (pairs * (i + 1) // n) - 1
        out.append((a, b))
    return out


class WorkerLink:
    """One worker process and the parent's view of it."""

    def __init__(self, engine: RemoteMediaEngine, index: int, ports: tuple[int, int]) -> None:
        self.engine = engine
        self.index = index
        self.ports = ports
        self.proc: subprocess.Popen[bytes] | None = None
        self.chan: Channel | None = None
        self.alive = False
        self.ready: deque[tuple[int, int, int]] = deque()  # (id, port, ssrc) of legs made in advance
        self.legs: dict[int, RemoteLeg] = {}
        self.requests: dict[int, asyncio.Future[Any]] = {}
        self.recordings: dict[int, RemoteRecording] = {}
        self._req = itertools.count(1)
        self._rid = itertools.count(1)
        self.got_pool = asyncio.Event()
        self.deaths = 0
        self.spawned_at = 0.0
        self.respawn_delay = RESPAWN_DELAY_S
        self.young_deaths = 0  # in a row, each within YOUNG_S of its start (crashing at start-up?)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spawn(self) -> None:
        eng = self.engine
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for s in (parent, child):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        settings = {
            "index": self.index, "host": eng.host, "ports": list(self.ports), "language": eng.language,
            "prompts": str(eng.prompts_root) if eng.prompts_root else None, "languages": list(eng.languages),
            "recording": eng.recorder is not None, "capacity": eng.capacity + eng.pool,
            "rtp_timeout_s": eng.rtp_timeout_s, "pool": eng.pool, "log_level": logging.getLogger().level,
            "engine": eng.engine_options, "realtime_priority": eng.realtime_priority,
        }  # fmt: skip
        cmd = [sys.executable, "-m", "softswitch.media.worker", "--fd", str(child.fileno()),
               "--settings", json.dumps(settings)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, pass_fds=(child.fileno(),), env=eng.env)
        child.close()
        self.spawned_at = time.monotonic()
        self.ready.clear()
        self.got_pool = asyncio.Event()
        self.chan = Channel(parent, eng.loop, self._on_message, self._on_close)
        self.alive = True
        log.info("media worker %d started (pid %d, RTP ports %d-%d)", self.index, self.proc.pid, *self.ports)

    def send(self, msg: Sequence[Any]) -> None:
        assert self.chan is not None
        self.chan.send(msg)

    def new_request(self) -> tuple[asyncio.Future[Any], int]:
        fut: asyncio.Future[Any] = self.engine.loop.create_future()
        req = next(self._req)
        self.requests[req] = fut
        return fut, req

    def new_recording_id(self) -> int:
        return next(self._rid)

    def dead_leg_used(self, leg: RemoteLeg) -> None:
        """An operation on a leg whose worker died: tell its owner again (the call may only now care)."""
        if not leg.closed:
            self.engine.loop.call_soon(leg._emit, WorkerDied(cast(Leg, leg), 0.0))

    # ---- from the worker -----------------------------------------------------
    def _on_message(self, msg: list[Any]) -> None:
        op = msg[0]
        if op == "ev":
            leg = self.legs.get(msg[1])
            if leg is not None and not leg.closed:
                leg._event(msg[2], msg[3], msg[4] if len(msg) > 4 else None)
        elif op == "res":
            fut = self.requests.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_result(msg[2])
        elif op == "err":
            fut = self.requests.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_exception(MediaError(msg[2]))
        elif op == "cx":
            fut = self.requests.pop(msg[1], None)
            if fut is not None:
                fut.cancel()
        elif op == "pool":
            self.ready.extend((i, port, ssrc) for i, port, ssrc in msg[1])
            self.got_pool.set()
        elif op in ("rp", "rc", "rd"):
            rec = self.recordings.get(msg[1])
            if rec is None:
                return
            if op == "rp":
                rec._update(msg[2], None)
            elif op == "rc":
                rec._update(msg[3], msg[2])
            else:
                del self.recordings[msg[1]]
                rec._finish(msg[2])
                if msg[2]:
                    log.error("recording %s failed in media worker %d: %s", rec.path, self.index, msg[2])
        else:
            log.warning("media worker %d: unknown message %r", self.index, op)

    def _on_close(self) -> None:
        self.alive = False
        self.ready.clear()
        if self.engine.stopping:
            return
        legs = [leg for leg in self.legs.values() if not leg.closed]
        self.legs = {}  # a restarted worker numbers its legs afresh
        for leg in legs:
            leg.dead = True
        self.deaths += 1
        young = time.monotonic() - self.spawned_at < YOUNG_S
        self.young_deaths = self.young_deaths + 1 if young else 0
        self.respawn_delay = min(RESPAWN_MAX_S, RESPAWN_DELAY_S * 2 ** max(0, self.young_deaths - 1))
        self._log_death(len(legs), 0)
        requests, self.requests = self.requests, {}
        for fut in requests.values():
            fut.cancel()
        recordings, self.recordings = self.recordings, {}
        for rec in recordings.values():
            rec._finish("media worker died")
        for leg in legs:
            leg._emit(WorkerDied(cast(Leg, leg), 0.0))
        self.engine.loop.call_later(self.respawn_delay, self._respawn)

    def _log_death(self, n_legs: int, tries: int) -> None:
        status = self.proc.poll() if self.proc is not None else None
        if status is None and tries < 25:  # the socket closes a moment before the process is reaped
            self.engine.loop.call_later(0.02, self._log_death, n_legs, tries + 1)
            return
        how = (f"killed by signal {-status}" if status is not None and status < 0
               else f"exit status {status}" if status is not None else "connection lost")  # fmt: skip
        log.error("media worker %d (pid %s) died (%s): its %d legs ended; restarting it in %.0f s",
                  self.index, self.pid, how, n_legs, self.respawn_delay)  # fmt: skip

    def _respawn(self) -> None:
        if self.engine.stopping or self.alive:
            return
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            self.spawn()
        except OSError as e:
            log.error("media worker %d cannot be restarted: %s", self.index, e)
            self.engine.loop.call_later(RESPAWN_MAX_S, self._respawn)


class RemoteMediaEngine:
    """The media engine's API, with the legs in ``workers`` processes."""

    def __init__(
        self,
        *,
        workers: int = 2,
        host: str = "127.0.0.1",
        ports: tuple[int, int] = (20000, 39999),
        prompts_root: str | Path | None = None,
        languages: Sequence[str] = ("zh",),
        recording: bool = True,
        language: str = "zh",
        capacity: int = 4096,
        rtp_timeout_s: float = 60.0,
        pool: int = POOL,
        engine_options: dict[str, Any] | None = None,
        realtime_priority: int = 0,
    ) -> None:
        """``pool``: legs each worker makes in advance; ``engine_options``: more MediaEngine keyword
        arguments for the workers (e.g. ``{"rtp_mode": "shared"}``; each worker has its own ports);
        ``realtime_priority``: SCHED_RR priority of the worker processes (0 = off)."""
        if workers < 1:
            raise ValueError("RemoteMediaEngine needs at least one worker")
        self.host = host
        self.prompts_root = Path(prompts_root) if prompts_root is not None else None
        self.languages = tuple(languages)
        # the engine's recorder is in the workers; calls only test it for None
        self.recorder: object | None = "workers" if recording else None
        self.language = language
        self.capacity = capacity
        self._rtp_timeout_s = rtp_timeout_s
        self.pool = pool
        self.engine_options = dict(engine_options or {})
        self.realtime_priority = realtime_priority
        self.loop: asyncio.AbstractEventLoop = asyncio.get_event_loop_policy().get_event_loop()
        self.legs: dict[int, RemoteLeg] = {}
        self._keys = itertools.count(1)
        self.stopping = False
        root = Path(__file__).resolve().parents[2]
        path = os.environ.get("PYTHONPATH")
        self.env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{path}" if path else str(root))
        self.workers = [WorkerLink(self, i, r) for i, r in enumerate(split_ports(*ports, workers))]

    @property
    def rtp_timeout_s(self) -> float:
        return self._rtp_timeout_s

    @rtp_timeout_s.setter
    def rtp_timeout_s(self, value: float) -> None:
        self._rtp_timeout_s = value
        for w in self.workers:
            if w.alive:
                w.send(["set", "rtp_timeout_s", value])

    # ---- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Start the worker processes (they take a moment: see :meth:`wait_ready`)."""
        self.loop = asyncio.get_running_loop()
        self.stopping = False
        for w in self.workers:
            w.spawn()

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Until every worker has its first legs ready (prompts loaded, ports bound)."""
        waits = [w.got_pool.wait() for w in self.workers]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except TimeoutError:
            late = [w.index for w in self.workers if not w.got_pool.is_set()]
            log.error("media workers %s not ready after %.0f s", late, timeout)

    def stop(self) -> None:
        """Ask the workers to finish (recordings closed) and wait for them a few seconds."""
        self.stopping = True
        for leg in list(self.legs.values()):
            self.release(leg)
        for w in self.workers:
            if w.alive and w.chan is not None:
                w.send(["quit"])
                w.chan.flush_blocking()
        deadline = time.monotonic() + 5.0
        for w in self.workers:
            proc = w.proc
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("media worker %d did not stop; killing it", w.index)
                proc.kill()
                proc.wait()
            if w.chan is not None:
                w.chan.close()
            w.alive = False

    # ---- legs --------------------------------------------------------------
    def _choose(self, near: Leg | RemoteLeg | None) -> WorkerLink:
        if near is not None:
            rl = cast(RemoteLeg, near)
            if rl.dead or not rl._worker.alive:
                raise MediaError(f"media worker {rl.worker} is down")
            return rl._worker
        best: WorkerLink | None = None
        for w in self.workers:
            if w.alive and w.ready and (best is None or len(w.legs) < len(best.legs)):
                best = w
        if best is None:
            raise MediaError("no media worker is ready")
        return best

    def create_leg(self, near: Leg | RemoteLeg | None = None) -> Leg:
        """A leg in a worker: ``near``'s worker (to be bridged with it) or the least loaded one."""
        w = self._choose(near)
        if not w.ready:
            raise MediaError(f"media worker {w.index} has no free leg ready (capacity or RTP ports)")
        wid, port, ssrc = w.ready.popleft()
        key = next(self._keys)
        leg = RemoteLeg(self, w, wid, key, port, ssrc)
        w.legs[wid] = leg
        self.legs[key] = leg
        w.send(["claim", wid])
        return cast(Leg, leg)  # the B2BUA's annotations name Leg; RemoteLeg has its API

    def release(self, leg: Leg | RemoteLeg) -> None:
        """Stop everything on the leg and give its ports back (in its worker)."""
        rl = cast(RemoteLeg, leg)
        if rl.closed:
            return
        if rl.peer is not None:
            self.unbridge(rl)
        for rec in (rl.recording, rl.app_recording):
            if rec is not None:
                rec._stop()
        rl.closed = True
        self.legs.pop(rl.slot, None)
        if not rl.dead:
            rl._worker.legs.pop(rl.wid, None)
            rl._worker.send(["release", rl.wid])

    def bridge(self, a: Leg | RemoteLeg, b: Leg | RemoteLeg) -> None:
        """Relay a's inbound to b and back, in their worker (they must share one: ``near``)."""
        ra, rb = cast(RemoteLeg, a), cast(RemoteLeg, b)
        if ra._worker is not rb._worker:
            raise MediaError(f"cannot bridge legs of media workers {ra.worker} and {rb.worker}")
        for one in (ra, rb):
            if one.peer is not None:
                self.unbridge(one)
        ra.peer, rb.peer = rb, ra
        if ra.dead or rb.dead:
            ra._worker.dead_leg_used(ra)
            rb._worker.dead_leg_used(rb)
            return
        ra._worker.send(["bridge", ra.wid, rb.wid])

    def unbridge(self, leg: Leg | RemoteLeg) -> None:
        rl = cast(RemoteLeg, leg)
        peer = rl.peer
        rl.peer = None
        if peer is not None:
            peer.peer = None
        if not rl.dead:
            rl._worker.send(["unbridge", rl.wid])

    # ---- introspection -----------------------------------------------------
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid is not None and w.alive]

    def stats(self) -> dict[str, Any]:
        return {
            "legs": len(self.legs),
            "workers": [
                {
                    "index": w.index,
                    "pid": w.pid,
                    "alive": w.alive,
                    "legs": len(w.legs),
                    "ready": len(w.ready),
                    "deaths": w.deaths,
                }
                for w in self.workers
            ],
        }

    async def worker_stats(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Each live worker's engine stats (tick lateness, packets)."""
        futs = []
        for w in self.workers:
            if w.alive:
                fut, req = w.new_request()
                w.send(["stats", req])
                futs.append(fut)
        done = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), timeout)
        return [d for d in done if isinstance(d, dict)]


WorkerPool = RemoteMediaEngine
