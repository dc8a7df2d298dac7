"""Shared-port RTP (``rtp_mode = "shared"``): one UDP port pair for every leg, batched I/O.

Per-leg mode gives each leg its own RTP/RTCP sockets, so the kernel
demultiplexes by local port and every packet costs a system call each way.
Shared mode binds one pair (RTP on an even port, RTCP on the next) for the
whole engine; every leg's SDP advertises that port (``Leg.port``). Inbound
packets are read with ``recvmmsg`` in batches into a preallocated numpy
buffer; outbound packets (the tick's prompts/tones/silence, relayed bridge
audio, RFC 4733 events) are queued into a preallocated send buffer and go out
with ``sendmmsg``, each with its own destination.

**Demultiplexing rule.** With one local port, the remote address is the key:

1. A packet whose source ``(ip, port)`` is a leg's address goes to that leg.
   A leg's address is the one its SDP gave (``configure(remote=...)``) until
   its first valid RTP packet, then the address it latched to (symmetric RTP).
2. A packet from an address no leg has is offered to the legs still waiting
   for their first packet (configured, not latched) *whose SDP address has the
   same IP*: when exactly one such leg exists it takes the packet and latches
   to the new port (a NAT or a phone that sends from another port than the one
   it advertised). Otherwise the packet is dropped and counted
   (``unmatched``): with several candidates, guessing could cross-connect two
   calls, which is worse than silence. Only a valid RTP packet of the leg's
   payload types latches (as in per-leg mode); junk is counted on the leg.
3. An address belongs to one leg: when a second leg is configured with an
   address another leg holds, the newest configuration wins (the other leg
   keeps sending but hears nothing and will time out; a warning is logged).
   Two live RTP streams cannot share a source address, so this only happens
   when an old leg outlives its call.

SSRC is not used: a new stream's SSRC is random and SDP rarely announces it,
so it cannot pick the leg for a first packet; after latching the address
already identifies the stream. Consequence: a phone behind NAT whose SDP
carries its private address (IP differs from where its packets come from)
does not latch in shared mode; trunk-facing deployments (the carrier's SBC
puts its real media address in SDP) and LAN phones work. Use ``per_leg``
mode, or an SBC, for NATed phones without a correct SDP address.

**RTCP** uses the shared RTCP port (RTP port + 1), read with ``recvfrom``
(a few packets per leg every 5 s). An RTCP packet is matched to the leg whose
RTP address is the sender's IP with port - 1 (the RFC 3550 convention);
others are dropped. Reports go out on the same socket to ``rtp port + 1`` of
the leg's remote, as in per-leg mode.

IPv4 only (the batched I/O builds ``sockaddr_in``).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from .mmsg import MmsgSocket, address_key, key_address, sockaddr
from .ports import PortAllocator

if TYPE_CHECKING:
    from .leg import Leg

__all__ = ["SharedRtp", "key_address"]

log = logging.getLogger("softswitch.media")

BATCH = 512  # datagrams per recvmmsg/sendmmsg call
SIZE = 2048  # bytes per datagram slot (as the per-leg receive buffer)


class SharedRtp:
    """The engine's shared RTP/RTCP sockets, the address table and the send queue."""

    def __init__(self, allocator: PortAllocator, port: int | None = None) -> None:
        host = allocator.host
        if ":" in host:
            raise ValueError(f"rtp_mode shared needs an IPv4 media address, not {host!r}")
        if port is None:
            rtp, rtcp, port = allocator.allocate()
        else:
            if port % 2:
                raise ValueError(f"shared RTP port must be even (RTCP takes the next one), got {port}")
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtp.bind((host, port))
                rtcp.bind((host, port + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                raise
            rtcp.setblocking(False)
        self.allocator = allocator
        self.port = port
        self.mm = MmsgSocket(sock=rtp, batch=BATCH, size=SIZE, timestamps=False)
        self.sock = rtp
        self.rtcp = rtcp
        self.by_addr: dict[int, Leg] = {}  # address_key -> leg (rule 1)
        self.slot_of: dict[int, int] = {}  # address_key -> leg.slot (the same table, for numpy)
        self.awaiting: dict[str, dict[int, Leg]] = {}  # SDP IP -> {slot: leg} not latched yet (rule 2)
        self.unmatched = 0  # RTP packets from no leg's address, dropped
        self.unmatched_rtcp = 0
        self.tx_count = 0
        self.tx_lens = [0] * BATCH

    # ---- the address table -------------------------------------------------
    def index(self, leg: Leg) -> None:
        """(Re)file ``leg`` under its current remote address; call after ``remote``/``latched`` change."""
        remote = leg.remote
        key: int | None = None
        addr: bytes | None = None
        if remote is not None:
            try:
                addr = sockaddr(remote[0], remote[1])
                key = int.from_bytes(addr[:8], "big")
            except (ValueError, OverflowError):
                log.warning(
                    "leg %d: remote %r is not an IPv4 address; shared RTP cannot reach it", leg.slot, remote
                )
        leg.sockaddr = addr
        if key != leg.addr_key:
            self._unfile(leg)
            if key is not None:
                other = self.by_addr.get(key)
                if other is not None and other is not leg:
                    log.warning("legs %d and %d share remote %s:%d; leg %d now takes its packets",
                                other.slot, leg.slot, remote[0], remote[1], leg.slot)  # type: ignore[index]  # fmt: skip
                self.by_addr[key] = leg
                self.slot_of[key] = leg.slot
            leg.addr_key = key
        waiting_ip = remote[0] if remote is not None and key is not None and not leg.latched else None
        if waiting_ip != leg.awaiting_ip:
            self._unwait(leg)
            if waiting_ip is not None:
                self.awaiting.setdefault(waiting_ip, {})[leg.slot] = leg
                leg.awaiting_ip = waiting_ip

    def forget(self, leg: Leg) -> None:
        """Remove a released leg from the table."""
        self._unfile(leg)
        self._unwait(leg)
        leg.addr_key = None
        leg.sockaddr = None

    def _unfile(self, leg: Leg) -> None:
        old = leg.addr_key
        if old is not None and self.by_addr.get(old) is leg:
            del self.by_addr[old]
            del self.slot_of[old]

    def _unwait(self, leg: Leg) -> None:
        ip = leg.awaiting_ip
        if ip is not None:
            group = self.awaiting.get(ip)
            if group is not None:
                group.pop(leg.slot, None)
                if not group:
                    del self.awaiting[ip]
            leg.awaiting_ip = None

    def claim(self, key: int) -> Leg | None:
        """The leg a packet from an unknown address may latch (rule 2), or None (dropped)."""
        ip = socket.inet_ntoa((key & 0xFFFFFFFF).to_bytes(4, "big"))
        group = self.awaiting.get(ip)
        if group is not None and len(group) == 1:
            return next(iter(group.values()))
        self.unmatched += 1
        return None

    def rtcp_owner(self, addr: tuple[str, int]) -> Leg | None:
        """The leg an RTCP packet from ``addr`` belongs to (its RTP comes from ``addr``'s port - 1)."""
        try:
            leg = self.by_addr.get(address_key(addr[0], addr[1] - 1))
        except (ValueError, OverflowError):
            leg = None
        if leg is None:
            self.unmatched_rtcp += 1
        return leg

    # ---- sending -------------------------------------------------------------
    def queue(self, data: memoryview | bytes | bytearray, length: int, dest: bytes) -> None:
        """Queue one datagram (``data[:length]``) to ``dest`` (a ``sockaddr_in``); sent by :meth:`flush`.

        The engine's tick inlines this for audio frames.
        """
        i = self.tx_count
        if i == BATCH:
            self.flush()
            i = 0
        off = i * SIZE
        self.mm.tx_mv[off : off + length] = data[:length]
        self.mm.tx_names_mv[i * 16 : i * 16 + 16] = dest
        self.tx_lens[i] = length
        self.tx_count = i + 1

    def flush(self) -> None:
        """Send everything queued (one ``sendmmsg`` per :data:`BATCH` datagrams)."""
        n = self.tx_count
        if n:
            self.tx_count = 0
            self.mm.send(n, self.tx_lens[:n])

    def close(self) -> None:
        self.allocator.release(self.port, close=False)
        self.sock.close()
        self.rtcp.close()
