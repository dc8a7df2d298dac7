"""A media worker process: a real MediaEngine served over msgpack on an inherited Unix socket.

    python -m softswitch.media.worker --fd N --settings JSON

Started by :class:`~softswitch.media.workers.RemoteMediaEngine`; the protocol is described
there. The worker keeps ``pool`` legs made in advance (ports bound) and tells the parent
their ids and ports, so that the parent's ``create_leg`` answers at once. It exits when
told ``quit`` or when the parent's end of the socket closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .engine import MediaEngine
from .leg import DigitEvent, Leg, MediaError, MediaEvent, PlaybackDone, RtpTimeout
from .prompts import PromptLibrary
from .recorder import RecorderThread, Recording
from .remote import Channel

log = logging.getLogger("softswitch.media.worker")

WATCH_S = 0.05  # how often closed recordings are checked for their file being finished


class WorkerServer:
    """Runs the commands of the parent on this process's engine and reports back."""

    def __init__(self, sock: socket.socket, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.index = int(settings["index"])
        self.loop = asyncio.get_running_loop()
        prompts = None
        if settings.get("prompts"):
            try:
                prompts = PromptLibrary(Path(settings["prompts"])).load(
                    languages=tuple(settings["languages"])
                )
            except Exception as e:
                log.warning(
                    "media worker %d: prompts not loaded from %s: %s", self.index, settings["prompts"], e
                )
        self.recorder = RecorderThread() if settings.get("recording") else None
        if self.recorder is not None:
            self.recorder.start()
        first, last = settings["ports"]
        self.engine = MediaEngine(host=settings["host"], ports=(first, last), prompts=prompts,
                                  recorder=self.recorder, language=settings["language"],
                                  capacity=int(settings["capacity"]),
                                  rtp_timeout_s=float(settings["rtp_timeout_s"]),
                                  **(settings.get("engine") or {}))  # fmt: skip
        self.pool_size = int(settings["pool"])
        self.legs: dict[int, Leg] = {}
        self.pool: set[int] = set()
        self._next_id = 1
        self._refill_scheduled = False
        self.recs: dict[int, Recording] = {}  # rid -> recording, while open
        self.rid_of: dict[tuple[int, bool], int] = {}  # (leg id, app) -> rid
        self.closing: dict[int, Recording] = {}  # closed, file not yet finished
        self._watching = False
        self.stopped = asyncio.Event()
        self.chan = Channel(sock, self.loop, self.on_message, self.stopped.set)
        self.ops: dict[str, Callable[..., None]] = {
            "claim": self.claim, "cfg": self.cfg, "play": self.play, "tone": self.tone, "stop": self.stop_leg,
            "collect": self.collect, "dtmf": self.dtmf, "digit": self.digit, "record": self.record,
            "stoprec": self.stoprec, "pause": self.pause, "resume": self.resume, "bridge": self.bridge,
            "unbridge": self.unbridge, "release": self.release, "set": self.set, "stats": self.stats,
            "quit": self.quit,
        }  # fmt: skip

    def start(self) -> None:
        self.engine.start()
        self.refill()

    # ---- legs made in advance ------------------------------------------------
    def refill(self) -> None:
        self._refill_scheduled = False
        made: list[tuple[int, int, int]] = []
        while len(self.pool) < self.pool_size:
            try:
                leg = self.engine.create_leg()
            except MediaError as e:
                if not made:
                    log.warning("media worker %d: cannot make a leg in advance: %s", self.index, e)
                break
            i = self._next_id
            self._next_id += 1
            self.legs[i] = leg
            self.pool.add(i)
            made.append((i, leg.port, leg.ssrc))
        if made or not self.pool:
            self.chan.send(["pool", made])

    def _schedule_refill(self) -> None:
        if not self._refill_scheduled:
            self._refill_scheduled = True
            self.loop.call_soon(self.refill)

    # ---- commands --------------------------------------------------------------
    def on_message(self, msg: list[Any]) -> None:
        op = self.ops.get(msg[0])
        if op is None:
            log.warning("media worker %d: unknown command %r", self.index, msg[0])
            return
        try:
            op(*msg[1:])
        except KeyError:
            log.debug("media worker %d: %s for an unknown leg", self.index, msg[0])
            if msg[0] in ("play", "collect", "dtmf"):
                self.chan.send(["cx", msg[2]])
            elif msg[0] == "record":
                self.chan.send(["rd", msg[2], "no such leg"])
        except MediaError as e:
            log.warning("media worker %d: %s failed: %s", self.index, msg[0], e)

    def claim(self, i: int) -> None:
        leg = self.legs[i]
        self.pool.discard(i)
        leg.last_rx = self.engine.now  # made in advance: the RTP timeout counts from now
        leg.timed_out = False
        leg.on_event = partial(self._event, i)
        self._schedule_refill()

    def cfg(self, i: int, codec: str | None, pt: int | None, te: int | bool | None, host: str | None,
            port: int | None) -> None:  # fmt: skip
        remote = (host, port) if host is not None and port is not None else None
        self.legs[i].configure(codec=codec, payload_type=pt, telephone_event_pt=te, remote=remote)

    def _reply(self, req: int, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self.chan.send(["cx", req])
        elif fut.exception() is not None:
            self.chan.send(["err", req, str(fut.exception())])
        else:
            self.chan.send(["res", req, fut.result()])

    def _track(self, req: int, call: Callable[[], asyncio.Future[Any]]) -> None:
        try:
            fut = call()
        except MediaError as e:
            self.chan.send(["err", req, str(e)])
            return
        if fut.done():
            self._reply(req, fut)
        else:
            fut.add_done_callback(partial(self._reply, req))

    def play(self, i: int, req: int, prompts: list[str | bytes], barge_in: bool, language: str) -> None:
        leg = self.legs[i]
        leg.language = language
        items = [p if isinstance(p, str) else np.frombuffer(p, dtype="<i2") for p in prompts]
        self._track(req, partial(leg.play, items, barge_in=barge_in))

    def tone(self, i: int, name: str) -> None:
        self.legs[i].tone(name)

    def stop_leg(self, i: int) -> None:
        self.legs[i].stop()

    def collect(self, i: int, req: int, max_digits: int, terminator: str, first: float, inter: float) -> None:
        leg = self.legs[i]
        self._track(req, partial(leg.collect_digits, max_digits, terminator=terminator, first_timeout=first,
                                 inter_digit_timeout=inter))  # fmt: skip

    def dtmf(self, i: int, req: int, digits: str, duration_ms: int) -> None:
        self._track(req, partial(self.legs[i].send_dtmf, digits, duration_ms=duration_ms))

    def digit(self, i: int, digit: str, source: str) -> None:
        self.legs[i].feed_digit(digit, source)

    # ---- recordings ----------------------------------------------------------------
    def record(self, i: int, rid: int, path: str, stereo: bool, fmt: str, app: bool) -> None:
        leg = self.legs[i]
        old = self.rid_of.pop((i, app), None)
        try:
            rec = leg.record(path, stereo=stereo, fmt=fmt, app=app)
        except Exception as e:
            log.error("media worker %d: cannot record %s: %s", self.index, path, e)
            self.chan.send(["rd", rid, str(e)])
            return
        if old is not None:
            self._closed(old)
        self.recs[rid] = rec
        self.rid_of[(i, app)] = rid

    def _closed(self, rid: int) -> None:
        rec = self.recs.pop(rid, None)
        if rec is None:
            return
        rec.close()  # no-op when the leg already closed it
        self.chan.send(["rc", rid, rec.duration, rec.pauses])
        self.closing[rid] = rec
        if not self._watching:
            self._watching = True
            self.loop.call_later(WATCH_S, self._watch)

    def _watch(self) -> None:
        for rid, rec in list(self.closing.items()):
            if rec.done:
                del self.closing[rid]
                self.chan.send(["rd", rid, str(rec.error) if rec.error is not None else None])
        self._watching = bool(self.closing)
        if self._watching:
            self.loop.call_later(WATCH_S, self._watch)

    def stoprec(self, i: int, app: bool) -> None:
        leg = self.legs[i]
        leg.stop_recording(app=app)
        rid = self.rid_of.pop((i, app), None)
        if rid is not None:
            self._closed(rid)

    def pause(self, i: int) -> None:
        leg = self.legs[i]
        leg.pause_recording()
        self._report_pauses(i)

    def resume(self, i: int) -> None:
        self.legs[i].resume_recording()
        self._report_pauses(i)

    def _report_pauses(self, i: int) -> None:
        rid = self.rid_of.get((i, False))
        rec = self.recs.get(rid) if rid is not None else None
        if rid is not None and rec is not None:
            self.chan.send(["rp", rid, rec.pauses])

    # ---- bridging and release ----------------------------------------------------------
    def bridge(self, a: int, b: int) -> None:
        self.engine.bridge(self.legs[a], self.legs[b])

    def unbridge(self, i: int) -> None:
        self.engine.unbridge(self.legs[i])

    def release(self, i: int) -> None:
        leg = self.legs.pop(i)
        leg.on_event = None
        self.engine.release(leg)
        for app in (False, True):
            rid = self.rid_of.pop((i, app), None)
            if rid is not None:
                self._closed(rid)
        self._schedule_refill()

    def set(self, name: str, value: Any) -> None:
        if name == "rtp_timeout_s":
            self.engine.rtp_timeout_s = float(value)

    def stats(self, req: int) -> None:
        s = self.engine.stats()
        s.update(index=self.index, pool=len(self.pool))
        self.chan.send(["res", req, s])

    def quit(self) -> None:
        self.stopped.set()

    # ---- events to the parent --------------------------------------------------------
    def _event(self, i: int, ev: MediaEvent) -> None:
        if isinstance(ev, DigitEvent):
            self.chan.send(["ev", i, "d", ev.digit, ev.source])
        elif isinstance(ev, PlaybackDone):
            self.chan.send(["ev", i, "p", ev.completed])
        elif isinstance(ev, RtpTimeout):
            self.chan.send(["ev", i, "t", ev.silent_for])

    def close(self) -> None:
        self.engine.stop()
        for rid in list(self.recs):
            self._closed(rid)
        if self.recorder is not None:
            self.recorder.stop()  # finishes the files
        for rid, rec in self.closing.items():
            self.chan.send(["rd", rid, str(rec.error) if rec.error is not None else None])
        self.chan.flush_blocking()
        self.chan.close()


async def serve(fd: int, settings: dict[str, Any]) -> None:
    from ..runtime import set_realtime, tune_gc

    problem = set_realtime(int(settings.get("realtime_priority") or 0))
    if problem is not None:
        log.warning("media worker: realtime priority not set: %s", problem)
    sock = socket.socket(fileno=fd)
    server = WorkerServer(sock, settings)
    server.start()
    tune_gc()
    await server.stopped.wait()
    server.close()


def main() -> None:
    p = argparse.ArgumentParser(description="softswitch media worker (started by the switch)")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--settings", required=True)
    args = p.parse_args()
    settings = json.loads(args.settings)
    logging.basicConfig(
        level=int(settings.get("log_level") or logging.INFO),
        format=f"%(asctime)s %(levelname)s %(name)s[{settings['index']}]: %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the switch stops us
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.fd, settings))
    else:
        uvloop.run(serve(args.fd, settings))


if __name__ == "__main__":
    main()
