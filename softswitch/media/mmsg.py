"""Batched UDP I/O: recvmmsg/sendmmsg through ctypes into preallocated numpy buffers (Linux, IPv4).

One system call moves up to ``batch`` datagrams. Used by the media engine's
shared-port RTP mode (one socket for every leg; legs told apart by the
remote address) and by the benches' load generators.

Receive side: datagram ``i`` lands in row ``i`` of :attr:`MmsgSocket.rx`
(``size`` bytes; longer datagrams are truncated), its length in
``rx_lens[i]``, its source ``sockaddr_in`` in ``rx_names[i]``, and
:attr:`MmsgSocket.rx_keys` ``[i]`` is the source as one integer
(:func:`address_key`), so a dict lookup per packet finds who sent it.
Optional ancillary data: kernel receive timestamps (SO_TIMESTAMPNS), so a
load generator's scheduling delays do not pollute pacing measurements, and
the packet's destination address (IP_PKTINFO), so a generator posing as many
phones on one socket knows which phone a packet was for.

Send side: fill rows of :attr:`MmsgSocket.tx`, their destinations in
``tx_names`` (:func:`sockaddr`), then :meth:`MmsgSocket.send` with the row
count and length(s). With ``pktinfo=True`` each row can also choose its
source IP (:meth:`MmsgSocket.set_sources`; the socket must be bound to
0.0.0.0).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
from typing import Any

import numpy as np

__all__ = ["MmsgSocket", "address_key", "sockaddr"]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

SO_TIMESTAMPNS = 35
IP_PKTINFO = 8
MSG_DONTWAIT = 0x40
SOCKADDR_IN = 16
CMSG_SPACE_16 = 32  # cmsghdr (16) + struct timespec (16)
CMSG_SPACE_12 = 32  # cmsghdr (16) + struct in_pktinfo (12), aligned to 8
_AF_INET_LE = struct.pack("<H", socket.AF_INET)


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


assert ctypes.sizeof(_Mmsghdr) == 64 and ctypes.sizeof(_Iovec) == 16  # the numpy views below rely on it

_libc.recvmmsg.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_Mmsghdr),
    ctypes.c_uint,
    ctypes.c_int,
    ctypes.c_void_p,
]
_libc.recvmmsg.restype = ctypes.c_int
_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int]
_libc.sendmmsg.restype = ctypes.c_int


def sockaddr(host: str, port: int) -> bytes:
    """The 16-byte ``struct sockaddr_in`` for an IPv4 address (ValueError if ``host`` is not one)."""
    try:
        ip = socket.inet_aton(host)
    except OSError:
        raise ValueError(f"not an IPv4 address: {host!r}") from None
    if host.count(".") != 3:  # inet_aton also takes "1" or "1.2": insist on dotted quads
        raise ValueError(f"not an IPv4 address: {host!r}")
    return _AF_INET_LE + port.to_bytes(2, "big") + ip + bytes(8)


def address_key(host: str, port: int) -> int:
    """The integer :attr:`MmsgSocket.rx_keys` holds for a datagram from ``(host, port)``."""
    return int.from_bytes(sockaddr(host, port)[:8], "big")


def key_address(key: int) -> tuple[str, int]:
    """Inverse of :func:`address_key`."""
    return socket.inet_ntoa((key & 0xFFFFFFFF).to_bytes(4, "big")), (key >> 32) & 0xFFFF


def _words(array: ctypes.Array[Any], batch: int, dtype: type[np.generic]) -> np.ndarray:
    """A numpy view of a ctypes struct array, one row per struct (to set fields without a Python loop)."""
    return np.frombuffer(memoryview(array).cast("B"), dtype=dtype).reshape(batch, -1)


class MmsgSocket:
    """A non-blocking IPv4 UDP socket with batched send and receive.

    ``sock``: use this bound socket instead of making one from ``host``/``port``
    (it is made non-blocking; its buffers are enlarged).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        batch: int = 1024,
        size: int = 256,
        *,
        timestamps: bool = True,
        pktinfo: bool = False,
        sock: socket.socket | None = None,
        buffer_bytes: int = 1 << 24,
    ) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((host, port))
        self.sock = sock
        for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_RCVBUFFORCE/SNDBUFFORCE
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, buffer_bytes)
            except OSError:  # not privileged: capped at net.core.rmem_max / wmem_max
                sock.setsockopt(socket.SOL_SOCKET, opt, buffer_bytes)
        if timestamps:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if pktinfo:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setblocking(False)
        self.fd = sock.fileno()
        self.address: tuple[str, int] = sock.getsockname()
        self.batch = batch
        self.size = size
        self.timestamps = timestamps
        self.pktinfo = pktinfo
        self.send_errors = 0  # datagrams the kernel refused (bad destination...)
        self.send_dropped = 0  # datagrams not sent because the send buffer was full
        control = (CMSG_SPACE_16 if timestamps else 0) + (CMSG_SPACE_12 if pktinfo else 0)
        self._control = control
        # ---- receive side
        self.rx = np.zeros((batch, size), dtype=np.uint8)
        self.rx_mv = memoryview(self.rx.reshape(-1))  # type: ignore[arg-type]
        self.rx_names = np.zeros((batch, SOCKADDR_IN), dtype=np.uint8)
        self.rx_keys = self.rx_names.view(">u8")[:, 0]  # family | port | IPv4 address, see address_key()
        self.rx_control = np.zeros((batch, max(control, 8)), dtype=np.uint8)
        self._rx_iov = (_Iovec * batch)()
        self._rx_msgs = (_Mmsghdr * batch)()
        for i in range(batch):
            self._rx_iov[i].iov_base = self.rx.ctypes.data + i * size
            self._rx_iov[i].iov_len = size
            h = self._rx_msgs[i].msg_hdr
            h.msg_name = self.rx_names.ctypes.data + i * SOCKADDR_IN
            h.msg_iov = ctypes.pointer(self._rx_iov[i])
            h.msg_iovlen = 1
            if control:
                h.msg_control = self.rx_control.ctypes.data + i * self.rx_control.shape[1]
        self._rx_words = _words(self._rx_msgs, batch, np.uint32)  # 16 words per struct mmsghdr
        self._rx_words[:, 2] = SOCKADDR_IN
        self._rx_words[:, 10] = control
        self._rx_used = 0  # entries the last call filled (the kernel rewrote their lengths)
        self.rx_lens = self._rx_words[:, 14]  # msg_len
        # ---- send side
        self.tx = np.zeros((batch, size), dtype=np.uint8)
        self.tx_mv = memoryview(self.tx.reshape(-1))  # type: ignore[arg-type]
        self.tx_names = np.zeros((batch, SOCKADDR_IN), dtype=np.uint8)
        self.tx_names_mv = memoryview(self.tx_names.reshape(-1))  # type: ignore[arg-type]
        self.tx_control = np.zeros((batch, CMSG_SPACE_12), dtype=np.uint8)
        self._tx_iov = (_Iovec * batch)()
        self._tx_msgs = (_Mmsghdr * batch)()
        for i in range(batch):
            self._tx_iov[i].iov_base = self.tx.ctypes.data + i * size
            h = self._tx_msgs[i].msg_hdr
            h.msg_name = self.tx_names.ctypes.data + i * SOCKADDR_IN
            h.msg_namelen = SOCKADDR_IN
            h.msg_iov = ctypes.pointer(self._tx_iov[i])
            h.msg_iovlen = 1
        self._tx_lens = _words(self._tx_iov, batch, np.uint64)[:, 1]  # iov_len

    # ---- receive -------------------------------------------------------------
    def recv_batch(self) -> int:
        """Receive up to ``batch`` datagrams into the ``rx*`` arrays; the count (0 when none are waiting)."""
        used = self._rx_used
        if used:  # the kernel overwrote msg_namelen and msg_controllen of the entries it filled
            words = self._rx_words
            words[:used, 2] = SOCKADDR_IN
            words[:used, 10] = self._control
        n: int = _libc.recvmmsg(self.fd, self._rx_msgs, self.batch, MSG_DONTWAIT, None)
        self._rx_used = n = n if n > 0 else 0
        return n

    def recv(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Receive up to ``batch`` datagrams: (count, lengths, source ports, kernel timestamps in s)."""
        n = self.recv_batch()
        if not n:
            return 0, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        lens = self.rx_lens[:n].astype(np.int64)
        ports = self.rx_names[:n, 2].astype(np.int64) << 8 | self.rx_names[:n, 3]
        return n, lens, ports, self.rx_timestamps(n)

    def _cmsg_data(self, n: int, cmsg_type: int, start: int, length: int) -> np.ndarray:
        """Bytes ``start:start+length`` of the data of the first ``cmsg_type`` message of rows 0..n-1."""
        ctrl = self.rx_control[:n]
        out = np.zeros((n, length), dtype=np.uint8)
        for off in range(0, ctrl.shape[1] - 15, 32):  # both kinds of control message take 32 bytes
            hit = ctrl[:, off + 12] == cmsg_type
            out[hit] = ctrl[hit, off + 16 + start : off + 16 + start + length]
        return out

    def rx_timestamps(self, n: int) -> np.ndarray:
        """Kernel receive times (s, float64) of the last batch's first ``n`` datagrams (needs timestamps)."""
        raw = self._cmsg_data(n, SO_TIMESTAMPNS, 0, 16).view(np.int64)
        return raw[:, 0] + raw[:, 1] * 1e-9

    def rx_destinations(self, n: int) -> np.ndarray:
        """IPv4 destination addresses (uint32, host order) the datagrams were sent to (needs pktinfo)."""
        return self._cmsg_data(n, IP_PKTINFO, 8, 4).view(">u4")[:, 0].astype(np.uint32)

    # ---- send ----------------------------------------------------------------
    def set_destinations(self, ports: np.ndarray, host: str = "127.0.0.1") -> None:
        """Address row i of the send buffer to ``host:ports[i]``."""
        for i, port in enumerate(ports.tolist()):
            self.tx_names[i, :] = np.frombuffer(sockaddr(host, port), np.uint8)

    def set_sources(self, ips: np.ndarray) -> None:
        """Send row i from IPv4 address ``ips[i]`` (uint32, host order) via IP_PKTINFO (needs pktinfo)."""
        if not self.pktinfo:
            raise ValueError("set_sources needs MmsgSocket(pktinfo=True)")
        header = struct.pack("=QiiiI", 28, socket.IPPROTO_IP, IP_PKTINFO, 0, 0)  # cmsghdr + ifindex
        for i, ip in enumerate(ips.tolist()):
            row = header[:20] + struct.pack("!I", ip) + bytes(8)
            self.tx_control[i, :] = np.frombuffer(row, np.uint8)
            h = self._tx_msgs[i].msg_hdr
            h.msg_control = self.tx_control.ctypes.data + i * CMSG_SPACE_12
            h.msg_controllen = CMSG_SPACE_12

    def send(self, count: int, length: int | np.ndarray | list[int]) -> int:
        """Send rows 0..count-1 of ``tx`` (``length`` bytes each, or ``length[i]``); how many went out.

        A datagram the kernel refuses (a bad destination) is skipped and counted in
        ``send_errors``; when the send buffer is full the rest is dropped (``send_dropped``),
        as a real-time sender should rather than block.
        """
        self._tx_lens[:count] = length
        sent = 0
        errors = 0
        msgs = self._tx_msgs
        while sent + errors < count:
            first = sent + errors
            n = _libc.sendmmsg(self.fd, ctypes.byref(msgs[first]), count - first, 0)
            if n > 0:
                sent += n
                continue
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.ENOBUFS):
                self.send_dropped += count - first
                break
            if err == errno.EINTR:
                continue
            errors += 1  # the first datagram of this call failed: skip it
        self.send_errors += errors
        return sent

    def send_strict(self, count: int, length: int | np.ndarray | list[int]) -> int:
        """Like :meth:`send` but raise OSError on any failure (load generators want to know)."""
        before = self.send_errors + self.send_dropped
        sent = self.send(count, length)
        if self.send_errors + self.send_dropped != before:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return sent

    def close(self) -> None:
        self.sock.close()
