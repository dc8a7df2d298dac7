"""Audio codecs (G.711, L16) and the RFC 4733 telephone-event payload, with a small registry.

``Codec.encode`` takes int16 PCM and returns the RTP payload bytes; ``Codec.decode`` does the reverse.
Hot paths that work on many legs at once should use the array functions in :mod:`.g711` directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .l16 import l16_decode, l16_encode

__all__ = [
    "CODECS",
    "L16",
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "Codec",
    "codec_by_name",
    "codec_by_payload_type",
]


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format: lower-case ``name``, (default) ``payload_type``, ``clock_rate`` and converters.

    ``encoding_name`` is the spelling used in SDP ``a=rtpmap`` (e.g. ``PCMU``); ``bytes_per_sample`` is the
    payload size of one sample (0 for non-audio formats).
    """

    name: str
    payload_type: int
    clock_rate: int
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]
    encoding_name: str = ""
    bytes_per_sample: int = 1

    @property
    def rtpmap(self) -> str:
        """SDP ``a=rtpmap`` value without the payload type, e.g. ``PCMU/8000``."""
        return f"{self.encoding_name or self.name}/{self.clock_rate}"


def _pcmu_encode(pcm: np.ndarray) -> bytes:
    return ulaw_encode(pcm).tobytes()


def _pcma_encode(pcm: np.ndarray) -> bytes:
    return alaw_encode(pcm).tobytes()


def _pcmu_decode(payload: bytes) -> np.ndarray:
    return ulaw_decode(payload)


def _pcma_decode(payload: bytes) -> np.ndarray:
    return alaw_decode(payload)


def _not_audio_encode(pcm: np.ndarray) -> bytes:
    raise TypeError("telephone-event carries events, not audio: use softswitch.codecs.telephone_event")


def _not_audio_decode(payload: bytes) -> np.ndarray:
    raise TypeError("telephone-event carries events, not audio: use softswitch.codecs.telephone_event")


PCMU = Codec("pcmu", 0, 8000, _pcmu_encode, _pcmu_decode, "PCMU", 1)
PCMA = Codec("pcma", 8, 8000, _pcma_encode, _pcma_decode, "PCMA", 1)
L16 = Codec("l16", 96, 8000, l16_encode, l16_decode, "L16", 2)  # dynamic payload type: 96 is a default
TELEPHONE_EVENT = Codec(
    "telephone-event", 101, 8000, _not_audio_encode, _not_audio_decode, "telephone-event", 0
)

CODECS: dict[str, Codec] = {"pcmu": PCMU, "pcma": PCMA, "l16": L16}
_BY_NAME: dict[str, Codec] = {**CODECS, "telephone-event": TELEPHONE_EVENT}
_STATIC: dict[int, Codec] = {0: PCMU, 8: PCMA}


def codec_by_name(name: str, payload_type: int | None = None) -> Codec | None:
    """Codec for an SDP encoding name (case-insensitive), optionally re-bound to a negotiated payload type."""
    codec = _BY_NAME.get(name.lower())
    if codec is None or payload_type is None or payload_type == codec.payload_type:
        return codec
    return dataclasses.replace(codec, payload_type=payload_type)


def codec_by_payload_type(pt: int, pt_map: Mapping[int, str] | None = None) -> Codec | None:
    """Codec for payload type ``pt``.

    ``pt_map`` maps payload types to encoding names as negotiated in SDP (``{0: "PCMU", 101:
    "telephone-event"}``); it wins over the static assignments (0 = PCMU, 8 = PCMA), which apply when
    ``pt`` is not in it. The returned codec carries ``pt`` as its payload type. None when unknown.
    """
    if pt_map is not None and pt in pt_map:
        return codec_by_name(pt_map[pt], pt)
    return _STATIC.get(pt)
