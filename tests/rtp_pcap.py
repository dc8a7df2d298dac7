"""Minimal libpcap files of RTP over UDP/IPv4 (what SIPp's pcap play reads), for tests."""

from __future__ import annotations

import struct
from pathlib import Path

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def write_pcap(path: Path, packets: list[tuple[float, bytes]], src: int = 6000, dst: int = 6000) -> None:
    """Write (time, RTP packet) pairs as Ethernet/IPv4/UDP frames 127.0.0.1:src -> 127.0.0.1:dst."""
    out = bytearray(PCAP_HEADER)
    for t, payload in packets:
        udp = struct.pack("!HHHH", src, dst, 8 + len(payload), 0) + payload
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            0,
            0x4000,
            64,
            17,
            0,
            bytes([127, 0, 0, 1]),
            bytes([127, 0, 0, 1]),
        )
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        sec = int(t)
        out += struct.pack("<IIII", sec, int((t - sec) * 1e6), len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))


def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """(time, UDP payload) of every IPv4/UDP frame in an Ethernet pcap."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    if magic != 0xA1B2C3D4:
        raise ValueError(f"{path}: not a little-endian microsecond pcap")
    pos = 24
    out = []
    while pos + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl :]
        length = struct.unpack_from("!H", udp, 4)[0]
        out.append((sec + usec / 1e6, udp[8:length]))
    return out
