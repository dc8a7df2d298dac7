"""PortAllocator with real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from softswitch.media.ports import PortAllocator, PortsExhausted


def _free_range(pairs: int) -> tuple[int, int]:
    """An even-aligned range of ``pairs`` port pairs that is currently free on 127.0.0.1."""
    for base in range(41000, 60000, 2 * pairs + 2):
        socks = []
        try:
            for p in range(base, base + 2 * pairs):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base, base + 2 * pairs - 1
    raise RuntimeError("no free port range for the test")


@pytest.fixture
def alloc() -> Iterator[PortAllocator]:
    first, last = _free_range(4)
    a = PortAllocator(first, last, "127.0.0.1")
    yield a
    a.close()


def test_even_ports_bound_and_non_blocking(alloc: PortAllocator) -> None:
    assert alloc.capacity == 4
    rtp, rtcp, port = alloc.allocate()
    assert port % 2 == 0 and port == alloc.first
    assert rtp.getsockname() == ("127.0.0.1", port)
    assert rtcp.getsockname() == ("127.0.0.1", port + 1)
    assert rtp.getblocking() is False and rtcp.getblocking() is False
    assert rtp.type == socket.SOCK_DGRAM
    assert alloc.in_use == 1
    # The sockets really work.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"hi", ("127.0.0.1", port))
        rtp.settimeout(1.0)
        assert rtp.recvfrom(10)[0] == b"hi"


def test_round_robin_reuse_and_exhaustion(alloc: PortAllocator) -> None:
    ports = [alloc.allocate()[2] for _ in range(4)]
    assert ports == list(range(alloc.first, alloc.first + 8, 2))
    assert alloc.in_use == 4
    with pytest.raises(PortsExhausted, match="no free RTP/RTCP port pair"):
        alloc.allocate()
    alloc.release(ports[1])
    alloc.release(ports[1])  # twice is harmless
    assert alloc.in_use == 3
    assert alloc.allocate()[2] == ports[1]
    alloc.release(ports[2])
    alloc.release(ports[0])
    # Round-robin: the search continues after the last allocation (ports[1]) -> ports[2] before ports[0].
    assert alloc.allocate()[2] == ports[2]
    assert alloc.allocate()[2] == ports[0]


def test_release_closes_sockets_unless_told_not_to(alloc: PortAllocator) -> None:
    rtp, rtcp, port = alloc.allocate()
    alloc.release(port)
    assert rtp.fileno() == -1 and rtcp.fileno() == -1
    rtp, rtcp, port = alloc.allocate()
    alloc.release(port, close=False)
    assert rtp.fileno() != -1
    rtp.close()
    rtcp.close()


def test_skips_ports_bound_by_others(alloc: PortAllocator) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_rtp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_rtcp,
    ):
        other_rtp.bind(("127.0.0.1", alloc.first))  # first pair's RTP port taken
        other_rtcp.bind(("127.0.0.1", alloc.first + 3))  # second pair's RTCP port taken
        _, _, port = alloc.allocate()
        assert port == alloc.first + 4
        _, _, port = alloc.allocate()
        assert port == alloc.first + 6
        with pytest.raises(PortsExhausted):
            alloc.allocate()
    # Once the other sockets are gone the skipped pairs are usable again.
    assert alloc.allocate()[2] == alloc.first
    assert alloc.allocate()[2] == alloc.first + 2


def test_range_validation() -> None:
    with pytest.raises(ValueError):
        PortAllocator(10001, 10002)  # no even/odd pair inside
    a = PortAllocator(10001, 10010, "127.0.0.1")
    assert a.capacity == 4  # 10002..10008 (10010 has no partner inside the range)
