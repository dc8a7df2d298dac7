"""The running switch: config + transports + core, on one event loop."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from typing import cast

from .acd.callbacks import CallbackStore
from .acd.control import ControlServer
from .acd.queue_log import QueueLog
from .acd.service import AcdService
from .calls import B2BUA, CallSession
from .cdr import CdrStore
from .cdr import db_path as cdr_db
from .config import Config, ConfigError, Listener
from .ivr import make_ivr_app, parse_menus
from .ivr.flows import make_flows
from .location import LocationStore
from .media.engine import MediaEngine
from .media.prompts import PromptLibrary
from .media.recorder import RecorderThread, repair_recordings
from .media.workers import RemoteMediaEngine
from .prompts_build import default_root
from .runtime import set_realtime, tune_gc
from .sip.peer import Peer
from .switch import SwitchCore
from .trading import make_broker
from .transport import Transports
from .voicemail import make_voicemail_app, run_voicemail

log = logging.getLogger("softswitch")

FLUSH_INTERVAL_S = 0.2
SWEEP_INTERVAL_S = 10.0


class ListenError(Exception):
    """A listener could not be opened (port in use, address not local, ...)."""


def location_db(config: Config) -> str:
    return str(config.data_dir / "location.sqlite")


class SwitchServer:
    """Owns the event-loop side: sockets, the timer, and periodic persistence."""

    def __init__(self, config: Config, *, media_workers: int = 0) -> None:
        self.config = config
        self.media_workers = media_workers  # 0: the media engine runs in this process
        self.store = LocationStore(location_db(config))
        hosts = [lst.host for lst in config.listen]
        self.core = SwitchCore(config, self.store, local_hosts=hosts)
        ctx = None
        if config.tls_cert and config.tls_key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key))
        self.transports = Transports(self._receive, ctx)
        self.listeners: list[Listener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.media: MediaEngine | None = None
        self.media_pool: RemoteMediaEngine | None = None
        self.recorder: RecorderThread | None = None
        self.cdr: CdrStore | None = None
        self.acd: AcdService | None = None
        self.control: ControlServer | None = None
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="softswitch-io")

    async def start(self) -> list[Listener]:
        self._loop = asyncio.get_running_loop()
        loaded = self.store.load(time.time())
        log.info("location service: %d bindings restored", loaded)
        for listener in self.config.listen:
            try:
                self.listeners.append(await self.transports.listen(listener))
            except OSError as e:
                await self.transports.close()
                raise ListenError(f"cannot listen on {listener}: {e.strerror or e}") from None
        self._start_calls()
        if self.media_pool is not None:
            await self.media_pool.wait_ready()
        if self.acd is not None:
            self.acd.start()
            self.control = ControlServer(self.config.acd.control_socket, self.acd)
            try:
                await self.control.start()
            except OSError as e:
                log.error("control socket %s not available: %s", self.config.acd.control_socket, e)
                self.control = None
        tune_gc()
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        log.info("listening on %s", ", ".join(str(lst) for lst in self.listeners))
        return self.listeners

    def _start_calls(self) -> None:
        """Media engine, recorder, CDR store and the B2BUA."""
        config = self.config
        local: dict[str, tuple[str, int]] = {}
        for lst in self.listeners:
            local.setdefault(lst.transport, (lst.host, lst.port))
        if not local:
            return
        media_host = next(iter(local.values()))[0]
        if media_host in ("0.0.0.0", "::"):
            media_host = socket.gethostbyname(socket.gethostname())
        if config.recording.enabled:
            repaired = repair_recordings(config.data_dir)
            if repaired:
                log.warning("repaired %d recordings cut short by a crash", len(repaired))
        # also when calls are not recorded: voicemail messages are application recordings
        self.recorder = RecorderThread()
        self.recorder.start()
        prompts = None
        root = default_root()
        if self.media_workers:  # each worker loads the prompts itself
            self.media_pool = RemoteMediaEngine(workers=self.media_workers, host=media_host, ports=config.rtp_ports,
                                                prompts_root=root if root.is_dir() else None,
                                                languages=(config.language,), language=config.language,
                                                capacity=2 * config.max_calls + 16,
                                                rtp_timeout_s=config.rtp_timeout_s,
                                                engine_options={"rtp_mode": config.rtp_mode},
                                                realtime_priority=config.realtime_priority)  # fmt: skip
            if config.shared_rtp_port is not None:
                log.warning(
                    "[media] shared_port is ignored with media workers: each takes a pair of its range"
                )
            self.media_pool.start()
            self.media = cast(MediaEngine, self.media_pool)  # the same API, with RemoteLeg proxies
        elif root.is_dir():
            try:
                prompts = PromptLibrary(root).load(languages=(config.language,))
            except Exception as e:
                log.warning("prompts not loaded from %s: %s", root, e)
        if self.media is None:
            self.media = MediaEngine(host=media_host, ports=config.rtp_ports, prompts=prompts, recorder=self.recorder,
                                     language=config.language, capacity=2 * config.max_calls + 16,
                                     rtp_timeout_s=config.rtp_timeout_s, rtp_mode=config.rtp_mode,
                                     shared_port=config.shared_rtp_port)  # fmt: skip
            self.media.start()
            problem = set_realtime(config.realtime_priority)  # in-process: the whole switch
            if problem is not None:
                log.warning("realtime priority not set: %s", problem)
        self.cdr = CdrStore(cdr_db(config.data_dir))
        loop = self._loop
        assert loop is not None
        calls = B2BUA(config, self.core.stack, self.core.ids, self.store, self.core.auth, self.media, self.cdr,
                      local=local, clock=lambda: (loop.time(), time.time()), executor=self.executor)  # fmt: skip
        calls.flush = self._flush_calls
        self._register_apps(calls)
        self.core.enable_calls(calls)

    def _register_apps(self, calls: B2BUA) -> None:
        """IVR menus from [ivr.*] and voicemail boxes answer their routes' calls."""
        config = self.config
        menus, _ = parse_menus(config.raw.get("ivr", {}), prompt_names=None)  # checked by load_config

        async def voicemail(session: CallSession, box: str) -> None:
            await run_voicemail(session, box, config.data_dir)

        try:
            flows = make_flows(make_broker(config), pause_during_pin=config.recording.pause_during_pin)
        except ConfigError as e:
            log.error("trading back end not available: %s", e)
            flows = {}
        calls.apps["voicemail"] = make_voicemail_app(config.data_dir)
        acd = AcdService(config, queue_log=QueueLog(config.data_dir), store=self.store, voicemail=voicemail,
                         callbacks=CallbackStore(config.data_dir))  # fmt: skip
        acd.attach(calls)
        self.acd = acd
        calls.apps["queue"] = acd.queue_app
        calls.apps["feature"] = acd.feature_app
        calls.apps["ivr"] = make_ivr_app(menus, flows, voicemail=voicemail, on_queue=acd.serve_caller)

    def _flush_calls(self) -> None:
        """Send what the B2BUA queued outside a packet or timer (media events)."""
        calls = self.core.calls
        if calls is None or not calls.pending:
            return
        out, calls.pending = calls.pending, []
        for t in out:
            self.transports.send(t.data, t.peer)
        self._arm_timer()

    def _receive(self, data: bytes, peer: Peer) -> None:
        assert self._loop is not None
        try:
            out = self.core.receive(data, peer, self._loop.time(), time.time())
        except Exception:  # the process never dies on a packet
            log.exception("unexpected error on a message from %s:%s", peer.host, peer.port)
            return
        send = self.transports.send
        for t in out:
            send(t.data, t.peer)
        self._arm_timer()

    def _arm_timer(self) -> None:
        at = self.core.next_timer()
        if at is None or at == self._timer_at:
            return
        assert self._loop is not None
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= at:
                return  # the armed one fires first and re-arms
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_at = None
        try:
            out = self.core.handle_timer(self._loop.time(), time.time())
        except Exception:
            log.exception("unexpected error in timer handling")
            out = []
        for t in out:
            self.transports.send(t.data, t.peer)
        self._arm_timer()

    async def _housekeeping(self) -> None:
        last_sweep = time.time()
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            now = time.time()
            if now - last_sweep >= SWEEP_INTERVAL_S:
                self.store.sweep(now)
                last_sweep = now
            try:
                self.store.flush()
            except Exception:
                log.exception("could not persist bindings; will retry")

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
        if self.control is not None:
            await self.control.stop()
        if self.acd is not None:
            await self.acd.stop()
        await self.transports.close()
        if self.media is not None:
            self.media.stop()
        if self.recorder is not None:
            self.recorder.stop()
        if self.cdr is not None:
            self.cdr.close()
        self.executor.shutdown(wait=True)
        self.store.close()
        log.info("stopped")


async def serve(config: Config, *, media_workers: int = 0) -> None:
    """Run the switch until SIGINT or SIGTERM (``media_workers``: media engine processes, 0 = in-process)."""
    server = SwitchServer(config, media_workers=media_workers)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_stop)
    try:
        await server.wait_stopped()
    finally:
        await server.stop()
