"""The media engine: RTP legs driven by one 20 ms ticker, in-process.

Every call leg owns an RTP/RTCP socket pair from the configured port range.
Inbound packets are drained with ``loop.add_reader`` + ``recv*_into`` into
preallocated buffers; audio payloads land in a per-leg ring inside one numpy
array so the ticker can decode, detect DTMF and record for all legs at once.
Outbound audio (prompts, tones, silence, RFC 4733 events) is sent by the
ticker from pre-encoded frames with ``struct.pack_into``; bridged legs relay
packets as they arrive, rewriting SSRC, sequence and timestamp and
transcoding PCMU<->PCMA by table when the two legs' codecs differ.

``rtp_mode="shared"`` replaces the per-leg sockets by one RTP/RTCP port pair
for all legs with batched recvmmsg/sendmmsg (see :mod:`.shared` for the
demultiplexing rule); everything else is the same in both modes.

The public API is on :class:`Leg` (``play``, ``stop``, ``tone``,
``collect_digits``, ``send_dtmf``, ``record``...) and
:meth:`MediaEngine.bridge`; events (:class:`DigitEvent`,
:class:`PlaybackDone`, :class:`RtpTimeout`) go to ``Leg.on_event``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..codecs.g711 import ALAW_DECODE, ALAW_TO_ULAW, ULAW_DECODE, ULAW_TO_ALAW, alaw_encode, ulaw_encode
from ..codecs.telephone_event import decode_event
from .dtmf import GoertzelDetector
from .leg import (
    _PROMPT,
    _TONE,
    FRAME,
    SILENCE,
    DigitEvent,
    Leg,
    MediaError,
    MediaEvent,
    Mode,
    PlaybackDone,
    RtpTimeout,
)
from .ports import PortAllocator
from .prompts import PromptLibrary
from .recorder import RecorderThread
from .rtp import build_rr, build_sr, ntp_from_unix, parse_rtcp
from .shared import SIZE as SHARED_SIZE
from .shared import SharedRtp, key_address
from .tones import tone_frame

log = logging.getLogger("softswitch.media")

TICK = 0.020
RING = 16  # inbound frames buffered per leg (320 ms: rides out a stall of the event loop)
CATCH_UP = 4  # frames a leg may consume in one tick while it has a backlog
HEADER = struct.Struct("!BBHII")
RTCP_EVERY_TICKS = 250  # 5 s
RTP_MODES = ("per_leg", "shared")
# shared mode: once the socket is readable, wait this long and read everything that came meanwhile
# (batches of ~legs * 50 * DRAIN_DELAY packets instead of a few per wake-up; relays wait <= 2 ms)
DRAIN_DELAY = 0.002
_DECODE = np.concatenate([ULAW_DECODE, ALAW_DECODE]).astype(np.int16)
_TRANSCODE = {  # (from, to) -> bytes.translate table
    ("pcmu", "pcma"): bytes(ULAW_TO_ALAW.astype(np.uint8).tolist()),
    ("pcma", "pcmu"): bytes(ALAW_TO_ULAW.astype(np.uint8).tolist()),
}


__all__ = [
    "DigitEvent",
    "Leg",
    "MediaEngine",
    "MediaError",
    "MediaEvent",
    "Mode",
    "PlaybackDone",
    "RtpTimeout",
]


class MediaEngine:
    """All legs of the process, one ticker, vectorised inbound processing."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        ports: tuple[int, int] = (20000, 39999),
        prompts: PromptLibrary | None = None,
        recorder: RecorderThread | None = None,
        language: str = "zh",
        capacity: int = 4096,
        rtp_timeout_s: float = 60.0,
        rtp_mode: str = "per_leg",
        shared_port: int | None = None,
    ) -> None:
        """``rtp_mode``: "per_leg" (a socket pair per leg) or "shared" (one pair for all legs,
        ``shared_port`` or the first free pair of ``ports``; batched I/O)."""
        if rtp_mode not in RTP_MODES:
            raise ValueError(f"unknown rtp_mode {rtp_mode!r}; expected per_leg or shared")
        self.host = host
        self.allocator = PortAllocator(ports[0], ports[1], host)
        self.rtp_mode = rtp_mode
        self.shared: SharedRtp | None = None
        self._drain_handle: asyncio.TimerHandle | None = None
        if rtp_mode == "shared":
            try:
                self.shared = SharedRtp(self.allocator, shared_port)
            except Exception as e:
                raise MediaError(f"cannot open the shared RTP port: {e}") from None
        self.prompts = prompts
        self.recorder = recorder
        self.language = language
        self.capacity = capacity
        self.rtp_timeout_s = rtp_timeout_s
        self.loop: asyncio.AbstractEventLoop = asyncio.get_event_loop_policy().get_event_loop()
        self.now = 0.0
        self.legs: dict[int, Leg] = {}
        self._free_slots = list(range(capacity - 1, -1, -1))
        self._ring = np.full((capacity, RING, FRAME), 0xFF, dtype=np.uint8)
        self._ring_mv = memoryview(self._ring.reshape(-1))  # type: ignore[arg-type]
        self._rx_w = [0] * capacity
        self._rx_r = np.zeros(capacity, dtype=np.int64)
        self._rx_w_np = np.zeros(capacity, dtype=np.int64)
        self._codec_id = np.zeros(capacity, dtype=np.int64)
        self._rxbuf = bytearray(2048)
        self._rxmv = memoryview(self._rxbuf)
        self._senders: dict[int, Leg] = {}
        self._consumers: dict[int, Leg] = {}
        self._recorders: dict[int, Leg] = {}
        self._consumer_slots = np.zeros(0, dtype=np.int64)
        self._consumers_dirty = False
        self._inband = np.zeros(capacity, dtype=bool)
        # shared mode: the payload type of plain audio a leg takes on the vectorised path, -1: per packet
        self._fast_pt = np.full(capacity, -1, dtype=np.int64)
        self._collectors: set[Leg] = set()
        self.detector = GoertzelDetector(capacity)
        self._tick_no = 0
        self._start = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.lateness: deque[float] = deque(maxlen=30000)  # ticker lateness samples (s)
        self._silence = {name: bytes([code]) * FRAME for name, code in SILENCE.items()}
        self._pcm_cache: dict[int, np.ndarray] = {}

    # ---- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.now = self.loop.time()
        self._start = self.now
        self._tick_no = 0
        self._handle = self.loop.call_at(self._start + TICK, self._tick)
        if self.shared is not None:
            self.loop.add_reader(self.shared.sock.fileno(), self._on_shared_readable)
            self.loop.add_reader(self.shared.rtcp.fileno(), self._on_shared_rtcp)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for leg in list(self.legs.values()):
            self.release(leg)
        if self.shared is not None:
            if self._drain_handle is not None:
                self._drain_handle.cancel()
                self._drain_handle = None
            self.loop.remove_reader(self.shared.sock.fileno())
            self.loop.remove_reader(self.shared.rtcp.fileno())
            self.shared.close()
            self.shared = None

    def create_leg(self, near: Leg | None = None) -> Leg:
        """A new leg with its own RTP/RTCP ports; configure() it from SDP.

        ``near``: a leg this one will be bridged to (matters to the media workers' engine only).
        """
        if not self._free_slots:
            raise MediaError(f"media engine full ({self.capacity} legs)")
        shared = self.shared
        if shared is not None:
            rtp, rtcp, port = shared.sock, shared.rtcp, shared.port
        elif self.rtp_mode == "shared":
            raise MediaError("the media engine is stopped")
        else:
            try:
                rtp, rtcp, port = self.allocator.allocate()
            except Exception as e:
                raise MediaError(f"no free RTP port: {e}") from None
        slot = self._free_slots.pop()
        leg = Leg(self, slot, rtp, rtcp, port)
        self.legs[slot] = leg
        self._rx_w[slot] = 0
        self._rx_w_np[slot] = 0
        self._rx_r[slot] = 0
        self._codec_id[slot] = 0
        self._ring[slot] = 0xFF
        self.detector.reset(slot)
        if shared is None:
            self.loop.add_reader(rtp.fileno(), self._on_rtp, leg)
            self.loop.add_reader(rtcp.fileno(), self._on_rtcp, leg)
        return leg

    def _reopen(self, leg: Leg) -> None:
        """Give a connected leg a fresh unconnected RTP socket on the same port."""
        self.loop.remove_reader(leg.rtp_sock.fileno())
        try:
            leg.rtp_sock = self.allocator.rebind_rtp(leg.port)
        except Exception as e:
            raise MediaError(str(e)) from None
        leg.connected = False
        self.loop.add_reader(leg.rtp_sock.fileno(), self._on_rtp, leg)

    def release(self, leg: Leg) -> None:
        """Stop everything on the leg and give its ports back."""
        if leg.closed:
            return
        leg.closed = True
        if leg.peer is not None:
            self.unbridge(leg)
        leg._finish_playback(False)
        if leg.collector is not None:
            leg._end_collect()
        while leg.dtmf_out:
            _, fut = leg.dtmf_out.popleft()
            if not fut.done():
                fut.cancel()
        leg.stop_recording()
        leg.stop_recording(app=True)
        leg.mode = Mode.IDLE
        self._update_sets(leg)
        if self.shared is not None:
            self.shared.forget(leg)
        elif self.rtp_mode == "per_leg":
            self.loop.remove_reader(leg.rtp_sock.fileno())
            self.loop.remove_reader(leg.rtcp_sock.fileno())
            self.allocator.release(leg.port)
            leg.rtp_sock.close()
            leg.rtcp_sock.close()
        del self.legs[leg.slot]
        self._free_slots.append(leg.slot)

    # ---- bridging ----------------------------------------------------------
    def bridge(self, a: Leg, b: Leg) -> None:
        """Relay a's inbound to b and b's inbound to a (transcoding when codecs differ)."""
        for leg in (a, b):
            if leg.peer is not None:
                self.unbridge(leg)
            leg._finish_playback(False)
            leg.tone_name = None
        a.peer, b.peer = b, a
        # timestamps continue from what each side last sent
        a.bridge_ts = b.bridge_ts = None
        for leg in (a, b):
            leg.mode = Mode.BRIDGED
            leg.marker = True
            if leg.recording is not None and leg.record_partner is None:
                leg.record_partner = leg.peer
            self._update_sets(leg)

    def unbridge(self, leg: Leg) -> None:
        peer = leg.peer
        for one in (leg, peer):
            if one is None:
                continue
            one.peer = None
            one.record_partner = None
            one.mode = Mode.SILENCE if one.remote else Mode.IDLE
            one.marker = True
            self._update_sets(one)

    # ---- bookkeeping -------------------------------------------------------
    def _update_sets(self, leg: Leg) -> None:
        """Recompute which per-tick sets the leg is in after any state change (O(1))."""
        slot = leg.slot
        sending = (
            not leg.closed
            and leg.remote is not None
            and (leg.mode in (Mode.SILENCE, Mode.PROMPT, Mode.TONE) or bool(leg.dtmf_out))
        )
        if sending != leg.sending:
            leg.sending = sending
            if sending:
                self._senders[slot] = leg
            else:
                del self._senders[slot]
        if (leg.recording is not None or leg.app_recording is not None) and not leg.closed:
            self._recorders[slot] = leg
        else:
            self._recorders.pop(slot, None)
        self._inband[slot] = leg.inband and not leg.closed
        if self.shared is not None:
            fast = leg.latched and leg.peer is None and not leg.closed
            self._fast_pt[slot] = leg.pt if fast else -1
        for one in (leg, leg.peer):
            if one is None:
                continue
            partner_records = one.peer is not None and one.peer.recording is not None
            records = one.recording is not None or one.app_recording is not None
            consuming = not one.closed and (records or one.inband or partner_records)
            if consuming != one.consuming:
                one.consuming = consuming
                if consuming:
                    self._consumers[one.slot] = one
                else:
                    del self._consumers[one.slot]
                self._consumers_dirty = True

    def _frames_for(self, prompts: Sequence[str | np.ndarray], language: str, codec: str) -> np.ndarray:
        parts: list[np.ndarray] = []
        for p in prompts:
            if isinstance(p, str):
                if self.prompts is None:
                    raise MediaError("no prompt library loaded")
                try:
                    parts.append(self.prompts.frames(language, p, codec))
                except KeyError:
                    raise MediaError(f"unknown prompt {p!r} ({language})") from None
            else:
                pcm = np.asarray(p, dtype=np.int16).reshape(-1)
                pad = (-len(pcm)) % FRAME
                if pad:
                    pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])
                enc = ulaw_encode(pcm) if codec == "pcmu" else alaw_encode(pcm)
                parts.append(np.asarray(enc, dtype=np.uint8).reshape(-1, FRAME))
        if not parts:
            return np.zeros((0, FRAME), dtype=np.uint8)
        return np.ascontiguousarray(np.concatenate(parts) if len(parts) > 1 else parts[0], dtype=np.uint8)

    # ---- digits ------------------------------------------------------------
    def _digit(self, leg: Leg, digit: str, source: str) -> None:
        if leg.closed:
            return
        leg.digits_received += 1
        if leg.mode == Mode.PROMPT and leg.barge_in:
            leg._finish_playback(False)
            leg.mode = Mode.SILENCE
            self._update_sets(leg)
        if leg.collector is not None:
            leg._collect(digit)
        else:
            leg.digits.append(digit)
        leg._emit(DigitEvent(leg, digit, source))

    # ---- inbound -----------------------------------------------------------
    def _on_rtp(self, leg: Leg) -> None:
        try:
            if leg.connected:  # the kernel only delivers packets from the latched source
                n = leg.rtp_sock.recv_into(self._rxbuf)
                addr = leg.remote
            else:
                n, addr = leg.rtp_sock.recvfrom_into(self._rxbuf)
        except OSError:
            return  # EAGAIN, or an ICMP error surfacing on Linux: nothing to do
        self._rtp_packet(leg, self._rxmv, n, addr)  # type: ignore[arg-type]

    def _on_shared_readable(self) -> None:
        assert self.shared is not None
        self.loop.remove_reader(self.shared.sock.fileno())
        self._drain_handle = self.loop.call_later(DRAIN_DELAY, self._drain_shared)

    def _drain_shared(self) -> None:
        self._drain_handle = None
        shared = self.shared
        if shared is None:
            return
        try:
            self._on_shared_rtp()
        finally:
            self.loop.add_reader(shared.sock.fileno(), self._on_shared_readable)

    def _on_shared_rtp(self) -> None:
        """Shared mode: drain the socket in recvmmsg batches, demultiplex by source address.

        Plain audio of latched, unbridged legs (version 2, no CSRC/extension/padding,
        the leg's payload type, one 20 ms G.711 frame) takes a vectorised path:
        counters per packet, one numpy copy of all payloads into the legs' rings.
        Everything else (first packets, bridged legs, RFC 4733, odd packets) goes
        through :meth:`_rtp_packet` one by one, exactly as in per-leg mode.
        """
        shared = self.shared
        if shared is None:
            return
        mm = shared.mm
        rx = mm.rx
        slot_get = shared.slot_of.get
        legs = self.legs
        rx_w = self._rx_w
        plen = HEADER.size + FRAME
        while True:
            n = mm.recv_batch()
            if not n:
                break
            keys = mm.rx_keys[:n].tolist()
            slots = np.array([slot_get(k, -1) for k in keys], dtype=np.int64)
            fast = (
                (slots >= 0)
                & (rx[:n, 0] == 0x80)
                & ((rx[:n, 1] & 0x7F) == self._fast_pt[slots])
                & (mm.rx_lens[:n] == plen)
            )
            now = self.now
            rows: list[int] = []
            ring_slots: list[int] = []
            ring_pos: list[int] = []
            fast_rows = np.flatnonzero(fast)
            for row, slot in zip(fast_rows.tolist(), slots[fast_rows].tolist(), strict=True):
                leg = legs[slot]
                leg.packets_in += 1
                leg.last_rx = now
                leg.timed_out = False
                if leg.consuming:
                    w = rx_w[slot]
                    rx_w[slot] = w + 1
                    rows.append(row)
                    ring_slots.append(slot)
                    ring_pos.append(w % RING)
            if rows:
                self._ring[ring_slots, ring_pos] = rx[rows, HEADER.size : plen]
            if len(fast_rows) < n:
                self._shared_slow(shared, np.flatnonzero(~fast).tolist(), keys)
            if shared.tx_count:
                shared.flush()  # relayed bridge audio
            if n < mm.batch:
                break

    def _shared_slow(self, shared: SharedRtp, rows: list[int], keys: list[int]) -> None:
        """The packets of a shared-mode batch that need the per-packet path."""
        by_addr = shared.by_addr
        rx_mv = shared.mm.rx_mv
        lens = shared.mm.rx_lens
        size = SHARED_SIZE
        for i in rows:
            key = keys[i]
            leg = by_addr.get(key)
            try:
                if leg is None:
                    leg = shared.claim(key)
                    if leg is None:
                        continue
                    addr = key_address(key)
                elif leg.latched:
                    addr = leg.remote  # type: ignore[assignment]
                else:
                    addr = key_address(key)
                off = i * size
                self._rtp_packet(leg, rx_mv[off : off + size], int(lens[i]), addr)
            except Exception:  # one bad packet must not cost the rest of the batch
                log.exception("shared RTP: packet from %s failed", key_address(key))

    def _rtp_packet(self, leg: Leg, buf: memoryview, n: int, addr: tuple[str, int]) -> None:
        """One received datagram (``buf[:n]``) from ``addr`` for ``leg``: validate, latch, relay, buffer."""
        if n < 12:
            leg.bad_packets += 1
            return
        b0, b1, _seq, ts, _ssrc = HEADER.unpack_from(buf, 0)
        pt = b1 & 0x7F
        if b0 & 0xC0 != 0x80 or (pt != leg.pt and pt != leg.te_pt and pt != 13):
            leg.bad_packets += 1
            return
        start = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:  # header extension
            if n < start + 4:
                leg.bad_packets += 1
                return
            start += 4 + 4 * ((buf[start + 2] << 8) | buf[start + 3])
        end = n - buf[n - 1] if b0 & 0x20 else n
        if end < start:
            leg.bad_packets += 1
            return
        if not leg.connected and (not leg.latched or self.shared is None):
            # per-leg: an unconnected socket takes any source; shared: only the first packet latches
            if addr != leg.remote and leg.latched:
                return  # not from the latched source
            self._latch(leg, addr)
        leg.packets_in += 1
        leg.last_rx = self.now
        leg.timed_out = False
        peer = leg.peer
        if pt == leg.pt:
            if peer is not None and peer.remote is not None:
                self._relay(leg, peer, buf, b1 & 0x80, ts, start, end, peer.pt, audio=True)
            if leg.consuming:
                slot = leg.slot
                w = self._rx_w[slot]
                off = (slot * RING + (w % RING)) * FRAME
                length = min(end - start, FRAME)
                self._ring_mv[off : off + length] = buf[start : start + length]
                self._rx_w[slot] = w + 1
        elif pt == leg.te_pt and end - start >= 4:
            if leg.inband:  # the phone sends RFC 4733: trust it, stop in-band detection
                leg.inband = False
                self._update_sets(leg)
            try:
                event = decode_event(bytes(buf[start : start + 4]))
            except ValueError:
                leg.bad_packets += 1
                return
            digit = leg.rfc4733.feed(ts, event, bool(b1 & 0x80))
            if digit is not None:
                self._digit(leg, digit, "rfc4733")
            if peer is not None and peer.remote is not None and peer.te_pt is not None:
                self._relay(leg, peer, buf, b1 & 0x80, ts, start, end, peer.te_pt, audio=False)

    def _latch(self, leg: Leg, addr: tuple[str, int]) -> None:
        """Symmetric RTP: answer where the media comes from, and connect the socket to it."""
        leg.remote = addr
        leg.latched = True
        if self.shared is not None:
            self.shared.index(leg)  # file the leg under the address it latched to
        else:
            try:
                leg.rtp_sock.connect(addr)
                leg.connected = True
            except OSError:
                leg.connected = False
        if leg.mode == Mode.IDLE:
            leg.mode = Mode.SILENCE
        self._update_sets(leg)

    def _relay(
        self,
        src: Leg,
        dst: Leg,
        buf: memoryview,
        marker: int,
        ts: int,
        start: int,
        end: int,
        pt: int,
        audio: bool,
    ) -> None:
        n = end - start
        if n > 1500:
            return
        base = dst.bridge_ts
        if base is None:
            # map the source's timestamps onto the destination's own timeline
            dst.bridge_ts = base = (dst.ts_base + FRAME * self._tick_no - ts) & 0xFFFFFFFF
            marker = 0x80
        dst.seq = seq = (dst.seq + 1) & 0xFFFF
        out = dst.relay_mv
        HEADER.pack_into(out, 0, 0x80, marker | pt, seq, (ts + base) & 0xFFFFFFFF, dst.ssrc)
        if audio and src.codec != dst.codec:
            out[12 : 12 + n] = bytes(buf[start:end]).translate(_TRANSCODE[(src.codec, dst.codec)])
        else:
            out[12 : 12 + n] = buf[start:end]
        if self.shared is not None:
            if dst.sockaddr is not None:
                self.shared.queue(out, 12 + n, dst.sockaddr)
                dst.packets_out += 1
                dst.octets_out += n
            return
        try:
            if dst.connected:
                dst.rtp_sock.send(out[: 12 + n])
            else:
                dst.rtp_sock.sendto(out[: 12 + n], dst.remote)  # type: ignore[arg-type]
        except OSError:
            return
        dst.packets_out += 1
        dst.octets_out += n

    def _on_rtcp(self, leg: Leg) -> None:
        try:
            n, addr = leg.rtcp_sock.recvfrom_into(self._rxbuf)
        except OSError:
            return
        self._rtcp_packet(leg, n, addr)

    def _on_shared_rtcp(self) -> None:
        shared = self.shared
        if shared is None:
            return
        for _ in range(64):  # a few reports per leg every 5 s: drain a bounded number per wake-up
            try:
                n, addr = shared.rtcp.recvfrom_into(self._rxbuf)
            except OSError:
                return
            leg = shared.rtcp_owner(addr)
            if leg is not None:
                self._rtcp_packet(leg, n, addr)

    def _rtcp_packet(self, leg: Leg, n: int, addr: tuple[str, int]) -> None:
        try:
            leg.rtcp_last = list(parse_rtcp(bytes(self._rxmv[:n])))
        except ValueError:
            leg.bad_packets += 1
            return
        if leg.rtcp_remote is None or not leg.latched:
            leg.rtcp_remote = addr

    # ---- the ticker --------------------------------------------------------
    def _tick(self) -> None:
        loop = self.loop
        now = loop.time()
        self._tick_no += 1
        due = self._start + self._tick_no * TICK
        self.lateness.append(now - due)
        if now - due > 5 * TICK:  # far behind (suspended, overloaded): skip ahead, timestamps jump
            self._tick_no = int((now - self._start) / TICK)
            due = self._start + self._tick_no * TICK
        self.now = now
        try:
            self._send_all()
            if self.shared is not None:
                self.shared.flush()
            self._process_inbound()
            if self._collectors:
                self._check_collectors(now)
            if self._tick_no % 50 == 0:
                self._check_timeouts(now)
            if self._tick_no % RTCP_EVERY_TICKS == 0:
                self._send_rtcp()
        except Exception:
            log.exception("media tick failed")
        self._handle = loop.call_at(due + TICK, self._tick)

    def _send_all(self) -> None:
        pack = HEADER.pack_into
        tick_no = self._tick_no
        ts_step = FRAME * tick_no
        silence = self._silence
        shared = self.shared
        if shared is not None:
            tx_mv, names_mv, tx_lens = shared.mm.tx_mv, shared.mm.tx_names_mv, shared.tx_lens
            batch, size, plen = len(tx_lens), SHARED_SIZE, HEADER.size + FRAME
        for leg in list(self._senders.values()):
            out_mv = leg.out_mv
            pt = leg.pt
            if leg.dtmf_out:
                sender, fut = leg.dtmf_out[0]
                step = sender.next_packet()
                if step is None:
                    leg.dtmf_out.popleft()
                    if not fut.done():
                        fut.set_result(None)
                    if not leg.dtmf_out and leg.mode not in (Mode.SILENCE, Mode.PROMPT, Mode.TONE):
                        self._update_sets(leg)
                    continue
                payload, marker, ts_offset, _end = step
                if not payload:
                    continue  # the pause between two events: nothing goes out
                leg.seq = (leg.seq + 1) & 0xFFFF
                ts = (leg.ts_base + FRAME * (tick_no - ts_offset)) & 0xFFFFFFFF
                pkt = bytearray(HEADER.size + len(payload))
                pack(pkt, 0, 0x80, (0x80 if marker else 0) | (leg.te_pt or 101), leg.seq, ts, leg.ssrc)
                pkt[HEADER.size :] = payload
                self._send(leg, pkt)
                continue
            mode = leg.mode
            if mode is _PROMPT:
                i = leg.frame_index
                if i < leg.n_frames:
                    off = i * FRAME
                    out_mv[12:] = leg.frames_mv[off : off + FRAME]  # type: ignore[index]
                    leg.frame_index = i + 1
                else:
                    leg._finish_playback(True)
                    if leg.mode is _PROMPT:  # the done-callback may have started the next prompt
                        leg.mode = Mode.SILENCE
                    out_mv[12:] = silence[leg.codec]
            elif mode is _TONE:
                out_mv[12:] = tone_frame(leg.tone_name or "", leg.frame_index, leg.codec)
                leg.frame_index += 1
            else:
                out_mv[12:] = silence[leg.codec]
            leg.seq = seq = (leg.seq + 1) & 0xFFFF
            if leg.marker:
                leg.marker = False
                pack(out_mv, 0, 0x80, 0x80 | pt, seq, (leg.ts_base + ts_step) & 0xFFFFFFFF, leg.ssrc)
            else:
                pack(out_mv, 0, 0x80, pt, seq, (leg.ts_base + ts_step) & 0xFFFFFFFF, leg.ssrc)
            if leg.recording is not None or leg.app_recording is not None:
                leg.last_out = out_mv[12:]
            if shared is not None:  # queue for sendmmsg (shared.queue, inlined)
                dest = leg.sockaddr
                if dest is None:
                    continue
                i = shared.tx_count
                if i == batch:
                    shared.flush()
                    i = 0
                off = i * size
                tx_mv[off : off + plen] = out_mv
                names_mv[i * 16 : i * 16 + 16] = dest
                tx_lens[i] = plen
                shared.tx_count = i + 1
                leg.packets_out += 1
                leg.octets_out += FRAME
                continue
            try:
                if leg.connected:
                    leg.rtp_sock.send(out_mv)
                else:
                    leg.rtp_sock.sendto(out_mv, leg.remote)  # type: ignore[arg-type]
            except OSError:
                continue
            leg.packets_out += 1
            leg.octets_out += FRAME

    def _send(self, leg: Leg, pkt: bytearray) -> None:
        # _send_all inlines this for audio frames: one call less per packet on the tick's hot loop
        if self.shared is not None:
            if leg.sockaddr is not None:
                self.shared.queue(pkt, len(pkt), leg.sockaddr)
                leg.packets_out += 1
                leg.octets_out += len(pkt) - HEADER.size
            return
        try:
            if leg.connected:
                leg.rtp_sock.send(pkt)
            else:
                leg.rtp_sock.sendto(pkt, leg.remote)  # type: ignore[arg-type]
        except OSError:
            return
        leg.packets_out += 1
        leg.octets_out += len(pkt) - HEADER.size

    def _process_inbound(self) -> None:
        """Take buffered frames of every consuming leg: decode, detect DTMF, record.

        One frame per leg per tick normally. After a stall (a GC pause, a burst)
        a leg may have a backlog: extra passes take one more frame from each leg
        still two or more behind, up to ``CATCH_UP`` frames a tick, so recordings
        keep the audio instead of dropping it (the ring holds ``RING`` frames).
        """
        if self._consumers_dirty:
            self._consumer_slots = np.fromiter(self._consumers, dtype=np.int64, count=len(self._consumers))
            self._consumers_dirty = False
        slots = self._consumer_slots
        if not len(slots):
            self._record({}, np.zeros((0, FRAME), dtype=np.int16), first=True)
            return
        rx_w = self._rx_w
        w = np.fromiter((rx_w[s] for s in slots.tolist()), dtype=np.int64, count=len(slots))
        r = np.maximum(self._rx_r[slots], w - RING)  # overrun: drop the oldest
        for pass_no in range(CATCH_UP):
            has = (w > r) if pass_no == 0 else (w - r >= 2)
            idx = slots[has]
            if pass_no and not len(idx):
                break
            pcm_rows: dict[int, int] = {}
            pcm = np.zeros((0, FRAME), dtype=np.int16)
            if len(idx):
                rh = r[has]
                frames = self._ring[idx, rh % RING]  # (n, 160) uint8
                r[has] = rh + 1
                codec_ids = self._codec_id[idx]
                if codec_ids.any():  # some PCMA legs: one lookup in the joined µ-law|A-law table
                    pcm = np.take(_DECODE, frames + (codec_ids << 8)[:, None])
                else:
                    pcm = np.take(ULAW_DECODE, frames)
                inband = self._inband[idx]
                if inband.any():
                    for slot, digit in self.detector.process(idx[inband], pcm[inband]):
                        leg = self.legs.get(int(slot))
                        if leg is not None and leg.inband:
                            self._digit(leg, digit, "inband")
                if self._recorders:
                    pcm_rows = {s: i for i, s in enumerate(idx.tolist())}
            self._record(pcm_rows, pcm, first=pass_no == 0)
        self._rx_r[slots] = r

    def _record(self, pcm_rows: dict[int, int], pcm: np.ndarray, *, first: bool) -> None:
        """Hand this pass's frames to the recordings (catch-up passes only where the caller had audio)."""
        for leg in self._recorders.values():
            row = pcm_rows.get(leg.slot)
            if not first and row is None:
                continue
            left = pcm[row] if row is not None else None
            partner = leg.record_partner
            if partner is not None:
                prow = pcm_rows.get(partner.slot)
                right = pcm[prow] if prow is not None else None
            elif first and leg.last_out is not None:
                right = self._decode_out(leg)
            else:
                right = None
            if leg.recording is not None:
                leg.recording.write(left, right)
            if leg.app_recording is not None:
                leg.app_recording.write(left, right)
            if first:
                leg.last_out = None

    def _decode_out(self, leg: Leg) -> np.ndarray:
        codes = np.frombuffer(leg.last_out, dtype=np.uint8)  # type: ignore[arg-type]
        table = ULAW_DECODE if leg.codec == "pcmu" else ALAW_DECODE
        return np.asarray(table[codes], dtype=np.int16)

    def _check_collectors(self, now: float) -> None:
        for leg in list(self._collectors):
            c = leg.collector
            if c is None:
                self._collectors.discard(leg)
            elif leg.mode == Mode.PROMPT and not c.digits:
                c.deadline = now + c.first_timeout  # the first-digit timeout runs once the prompt is over
            elif now >= c.deadline:
                leg._end_collect()

    def _check_timeouts(self, now: float) -> None:
        limit = self.rtp_timeout_s
        for leg in list(self.legs.values()):
            if leg.remote is None or leg.timed_out or leg.mode == Mode.IDLE:
                continue
            silent = now - leg.last_rx
            if silent >= limit:
                leg.timed_out = True
                leg._emit(RtpTimeout(leg, silent))

    def _send_rtcp(self) -> None:
        ntp = ntp_from_unix(time.time())
        for leg in list(self.legs.values()):
            if leg.rtcp_remote is None:
                continue
            ts = (leg.ts_base + FRAME * self._tick_no) & 0xFFFFFFFF
            if leg.packets_out:
                data = build_sr(leg.ssrc, ntp, ts, leg.packets_out & 0xFFFFFFFF, leg.octets_out & 0xFFFFFFFF)
            else:
                data = build_rr(leg.ssrc, ())
            with contextlib.suppress(OSError):
                leg.rtcp_sock.sendto(data, leg.rtcp_remote)

    # ---- introspection -----------------------------------------------------
    def stats(self) -> dict[str, Any]:
        lat = np.array(self.lateness) * 1000 if self.lateness else np.zeros(1)
        shared = self.shared
        return {
            "rtp_mode": self.rtp_mode,
            "legs": len(self.legs),
            "senders": len(self._senders),
            "unmatched_packets": shared.unmatched if shared is not None else 0,
            "send_errors": shared.mm.send_errors + shared.mm.send_dropped if shared is not None else 0,
            "packets_in": sum(leg.packets_in for leg in self.legs.values()),
            "packets_out": sum(leg.packets_out for leg in self.legs.values()),
            "tick_lateness_ms_p50": float(np.percentile(lat, 50)),
            "tick_lateness_ms_p99": float(np.percentile(lat, 99)),
            "tick_lateness_ms_max": float(lat.max()),
        }
