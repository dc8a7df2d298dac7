"""Batched UDP I/O for load generators: recvmmsg/sendmmsg through ctypes into numpy buffers.

One system call moves up to ``batch`` datagrams; receive timestamps come from
the kernel (SO_TIMESTAMPNS), so the generator's own scheduling delays do not
pollute pacing measurements of the system under test.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct

import numpy as np

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

SO_TIMESTAMPNS = 35
MSG_DONTWAIT = 0x40


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


_libc.recvmmsg.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_Mmsghdr),
    ctypes.c_uint,
    ctypes.c_int,
    ctypes.c_void_p,
]
_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int]

SOCKADDR_IN = 16
CONTROL = 32  # one cmsghdr (16) + struct timespec (16)


class MmsgSocket:
    """A non-blocking IPv4 UDP socket with batched send and receive."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, batch: int = 1024, size: int = 256) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((host, port))
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.address = self.sock.getsockname()
        self.batch = batch
        self.size = size
        # receive side
        self.rx = np.zeros((batch, size), dtype=np.uint8)
        self.rx_names = np.zeros((batch, SOCKADDR_IN), dtype=np.uint8)
        self.rx_control = np.zeros((batch, CONTROL), dtype=np.uint8)
        self._rx_iov = (_Iovec * batch)()
        self._rx_msgs = (_Mmsghdr * batch)()
        for i in range(batch):
            self._rx_iov[i].iov_base = self.rx.ctypes.data + i * size
            self._rx_iov[i].iov_len = size
            h = self._rx_msgs[i].msg_hdr
            h.msg_name = self.rx_names.ctypes.data + i * SOCKADDR_IN
            h.msg_iov = ctypes.pointer(self._rx_iov[i])
            h.msg_iovlen = 1
            h.msg_control = self.rx_control.ctypes.data + i * CONTROL
        # msg_len of every entry, as a numpy view (struct mmsghdr is 64 bytes; msg_len at offset 56)
        assert ctypes.sizeof(_Mmsghdr) == 64
        words = np.frombuffer(memoryview(self._rx_msgs).cast("B"), dtype=np.uint32).reshape(batch, 16)
        self._rx_words = words
        self._rx_lens = words[:, 14]
        # send side
        self.tx = np.zeros((batch, size), dtype=np.uint8)
        self.tx_names = np.zeros((batch, SOCKADDR_IN), dtype=np.uint8)
        self._tx_iov = (_Iovec * batch)()
        self._tx_msgs = (_Mmsghdr * batch)()
        for i in range(batch):
            self._tx_iov[i].iov_base = self.tx.ctypes.data + i * size
            h = self._tx_msgs[i].msg_hdr
            h.msg_name = self.tx_names.ctypes.data + i * SOCKADDR_IN
            h.msg_namelen = SOCKADDR_IN
            h.msg_iov = ctypes.pointer(self._tx_iov[i])
            h.msg_iovlen = 1

    def recv(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Receive up to ``batch`` datagrams: (count, lengths, source ports, kernel timestamps in s)."""
        self._reset_rx()
        n = _libc.recvmmsg(self.fd, self._rx_msgs, self.batch, MSG_DONTWAIT, None)
        if n <= 0:
            return 0, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        lens = self._rx_lens[:n].astype(np.int64)
        ports = self.rx_names[:n, 2].astype(np.int64) << 8 | self.rx_names[:n, 3]
        ctrl = self.rx_control[:n]
        sec = ctrl[:, 16:24].copy().view(np.int64).reshape(-1)
        nsec = ctrl[:, 24:32].copy().view(np.int64).reshape(-1)
        return n, lens, ports, sec + nsec * 1e-9

    def _reset_rx(self) -> None:
        # the kernel overwrites msg_namelen and msg_controllen: restore them (numpy view, no Python loop)
        self._rx_words[:, 2] = SOCKADDR_IN
        self._rx_words[:, 10] = CONTROL

    def set_destinations(self, ports: np.ndarray, host: str = "127.0.0.1") -> None:
        """Address row i of the send buffer to ``host:ports[i]``."""
        ip = socket.inet_aton(host)
        for i, port in enumerate(ports.tolist()):
            self.tx_names[i, :] = 0
            self.tx_names[i, :8] = np.frombuffer(
                struct.pack("<H", socket.AF_INET) + struct.pack("!H", port) + ip, np.uint8
            )

    def send(self, count: int, length: int) -> int:
        """Send rows 0..count-1 of ``tx`` (each ``length`` bytes) in as few calls as possible."""
        for i in range(count):
            self._tx_iov[i].iov_len = length
        sent = 0
        while sent < count:
            n = _libc.sendmmsg(self.fd, ctypes.byref(self._tx_msgs[sent]), count - sent, 0)
            if n <= 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            sent += n
        return sent

    def close(self) -> None:
        self.sock.close()
