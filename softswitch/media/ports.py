"""Allocation of RTP/RTCP UDP port pairs (RTP on an even port, RTCP on the next one)."""

from __future__ import annotations

import socket

__all__ = ["PortAllocator", "PortsExhausted"]


class PortsExhausted(RuntimeError):
    """No free RTP/RTCP port pair is left in the configured range."""


class PortAllocator:
    """Hands out bound, non-blocking UDP socket pairs from ``first..last`` on ``host``.

    Candidate RTP ports are the even ports ``p`` with ``p + 1 <= last``. Allocation is round-robin: the
    search starts after the previously allocated port, so a released port is only reused after the rest
    of the range has been tried (stale packets for an old call are unlikely to reach a new one). Ports
    that another process (or socket) has bound are skipped.
    """

    __slots__ = ("_cursor", "_family", "_ports", "_sockets", "first", "host", "last")

    def __init__(self, first: int, last: int, host: str = "0.0.0.0") -> None:
        start = first + (first & 1)
        if not 0 < start < last <= 65535:
            raise ValueError(f"RTP port range {first}-{last} holds no even/odd pair")
        self.first = first
        self.last = last
        self.host = host
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._ports = range(start, last, 2)  # p + 1 <= last for every p
        self._cursor = 0
        self._sockets: dict[int, tuple[socket.socket, socket.socket]] = {}

    @property
    def capacity(self) -> int:
        """Number of port pairs in the range."""
        return len(self._ports)

    @property
    def in_use(self) -> int:
        """Number of pairs currently allocated by this allocator."""
        return len(self._sockets)

    def _bind(self, port: int) -> socket.socket | None:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        return sock

    def allocate(self) -> tuple[socket.socket, socket.socket, int]:
        """Bind the next free pair: ``(rtp_socket, rtcp_socket, rtp_port)``; PortsExhausted when none is left."""
        ports = self._ports
        n = len(ports)
        for i in range(n):
            index = (self._cursor + i) % n
            port = ports[index]
            if port in self._sockets:
                continue
            rtp = self._bind(port)
            if rtp is None:
                continue
            rtcp = self._bind(port + 1)
            if rtcp is None:
                rtp.close()
                continue
            self._cursor = (index + 1) % n
            self._sockets[port] = (rtp, rtcp)
            return rtp, rtcp, port
        raise PortsExhausted(
            f"no free RTP/RTCP port pair in {self.first}-{self.last} on {self.host} "
            f"({len(self._sockets)} of {n} pairs allocated here, the rest are bound by other sockets)"
        )

    def rebind_rtp(self, port: int) -> socket.socket:
        """Replace the RTP socket of an allocated pair by a fresh unconnected one on the same port.

        A connected UDP socket cannot be disconnected portably; re-binding is how a leg
        whose remote address changed (re-INVITE) goes back to accepting any source.
        """
        rtp, rtcp = self._sockets[port]
        rtp.close()
        fresh = self._bind(port)
        if fresh is None:
            del self._sockets[port]
            rtcp.close()
            raise PortsExhausted(f"RTP port {port} was taken while re-binding it")
        self._sockets[port] = (fresh, rtcp)
        return fresh

    def release(self, port: int, *, close: bool = True) -> None:
        """Return ``port`` to the pool, closing both sockets unless ``close=False`` (the caller closes them).

        Unknown ports are ignored, so releasing twice is harmless.
        """
        pair = self._sockets.pop(port, None)
        if pair is not None and close:
            pair[0].close()
            pair[1].close()

    def close(self) -> None:
        """Release every allocated pair and close its sockets."""
        for port in list(self._sockets):
            self.release(port)
