"""Sockets: UDP, TCP and TLS listeners that only move bytes (no SIP logic).

Each listener delivers ``(data, Peer)`` to a callback and sends
:class:`~softswitch.sip.stack.Transmit` items back out: UDP from the listener
of the same address family, TCP/TLS over the connection the peer is on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

from .config import Listener
from .sip.errors import SipError
from .sip.message import StreamFramer
from .sip.peer import Peer

log = logging.getLogger("softswitch.transport")

Receiver = Callable[[bytes, Peer], None]
UDP_BUFFER = 8 << 20
_connection_ids = itertools.count(1)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, receive: Receiver) -> None:
        self.receive = receive
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's UDPTransport is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.receive(data, Peer("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class _Stream(asyncio.Protocol):
    def __init__(self, transports: Transports, name: str) -> None:
        self.transports = transports
        self.name = name
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        self.transport = stream
        host, port = stream.get_extra_info("peername")[:2]
        self.peer = Peer(self.name, host, port, next(_connection_ids))
        self.transports.connections[self.peer.connection] = stream

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        try:
            frames = self.framer.feed(data)
        except SipError as e:
            log.info(
                "closing %s connection from %s:%s: %s", self.name, self.peer.host, self.peer.port, e.reason
            )
            self.transport.close()
            return
        for frame in frames:
            self.transports.receive(frame, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.transports.connections.pop(self.peer.connection, None)


class Transports:
    """All listeners of the switch."""

    def __init__(self, receive: Receiver, ssl_context: ssl.SSLContext | None = None) -> None:
        self.receive = receive
        self.ssl_context = ssl_context
        self.udp: dict[int, asyncio.DatagramTransport] = {}  # by address family (4 or 6)
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: dict[int, asyncio.Transport] = {}
        self.bound: list[Listener] = []

    async def listen(self, listener: Listener) -> Listener:
        """Open one listener; returns it with the real port (for port 0)."""
        loop = asyncio.get_running_loop()
        family = 6 if ":" in listener.host else 4
        if listener.transport == "udp":
            sock = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_DGRAM)
            try:
                # room for a burst (or a GC pause) of thousands of requests; the kernel caps it at rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_BUFFER)
                sock.bind((listener.host, listener.port))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self.receive), sock=sock)
            self.udp.setdefault(family, transport)
            port = transport.get_extra_info("sockname")[1]
        else:
            ctx = self.ssl_context if listener.transport == "tls" else None
            if listener.transport == "tls" and ctx is None:
                raise ValueError("tls listener without a TLS context")
            server = await loop.create_server(
                lambda: _Stream(self, listener.transport), listener.host, listener.port, ssl=ctx
            )
            self.servers.append(server)
            port = server.sockets[0].getsockname()[1]
        bound = Listener(listener.transport, listener.host, port)
        self.bound.append(bound)
        return bound

    def send(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "udp":
            udp = self.udp.get(6 if ":" in peer.host else 4)
            if udp is None:
                log.warning("no udp listener for %s", peer.host)
                return
            udp.sendto(data, (peer.host, peer.port))
            return
        conn = self.connections.get(peer.connection)
        if conn is None or conn.is_closing():
            log.info("%s connection to %s:%s is gone; message dropped", peer.transport, peer.host, peer.port)
            return
        conn.write(data)

    async def close(self) -> None:
        for udp in self.udp.values():
            udp.close()
        for conn in list(self.connections.values()):
            conn.close()
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
