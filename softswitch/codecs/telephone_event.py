"""RFC 4733 telephone-event payload (named events 0-15: DTMF 0-9 * # A-D)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "EVENTS",
    "TelephoneEvent",
    "decode_event",
    "digit_event",
    "encode_event",
    "pack_event_into",
]

EVENTS = "0123456789*#ABCD"
_EVENT = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One event block: ``event`` code, E bit, ``volume`` (0..63, in -dBm0) and ``duration`` (timestamp units)."""

    event: int
    end: bool
    volume: int
    duration: int

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event {self.event} out of range 0..255")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume {self.volume} out of range 0..63")
        if not 0 <= self.duration <= 0xFFFF:
            raise ValueError(f"duration {self.duration} out of range 0..65535")

    @property
    def digit(self) -> str | None:
        """The DTMF character for events 0-15, else None."""
        return EVENTS[self.event] if self.event < 16 else None


def digit_event(digit: str) -> int:
    """Event code for a DTMF character (case-insensitive for A-D); ValueError otherwise."""
    index = EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return index


def pack_event_into(
    buf: bytearray | memoryview, offset: int, event: int, end: bool, volume: int, duration: int
) -> None:
    """Write a 4-byte event block at ``offset`` (hot path: no object; struct raises on out-of-range values)."""
    _EVENT.pack_into(buf, offset, event, (0x80 if end else 0) | (volume & 0x3F), duration)


def encode_event(ev: TelephoneEvent) -> bytes:
    """The 4-byte payload for ``ev``."""
    return _EVENT.pack(ev.event, (0x80 if ev.end else 0) | ev.volume, ev.duration)


def decode_event(payload: bytes | bytearray | memoryview) -> TelephoneEvent:
    """Parse the first event block of a payload; ValueError when shorter than 4 bytes.

    The reserved R bit is ignored as RFC 4733 §2.3 requires.
    """
    if len(payload) < 4:
        raise ValueError(f"telephone-event payload too short ({len(payload)} bytes)")
    event, flags, duration = _EVENT.unpack_from(payload, 0)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)
