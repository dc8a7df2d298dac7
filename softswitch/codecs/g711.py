"""G.711 µ-law (PCMU) and A-law (PCMA) by table lookup, vectorised with numpy.

The tables are built at import time from the ITU-T G.711 algorithm exactly as the ITU-T G.191 reference
software (``g711.c``: ``ulaw_compress``/``ulaw_expand``/``alaw_compress``/``alaw_expand``) computes it for
16-bit input: µ-law uses the top 14 bits, A-law the top 13 bits, and negative inputs are folded with the
one's complement (``~x``).  Decoding and A-law encoding agree with ``audioop`` for every value; µ-law
encoding differs from ``audioop`` (Sun's g711.c, which folds with ``-x``) only on the 508 negative inputs
that sit exactly on a decision value, where the two pick the adjacent code on either side of the tie.

``ULAW_TO_ALAW`` and ``ALAW_TO_ULAW`` are G.711 Tables 3 and 4 (direct code conversion), which resolve
ties differently from decode-then-encode in a few dozen low-level/segment-edge codes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "ALAW_TO_ULAW",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "ULAW_TO_ALAW",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_ulaw",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_alaw",
]

# Every 16-bit sample, ordered by its bit pattern: _LINEAR[u] == np.uint16(u).view(np.int16).
_LINEAR = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
_CODES = np.arange(256, dtype=np.int32)


def _segment(value: np.ndarray, first_limit: int) -> np.ndarray:
    """Number of doublings of ``first_limit`` that ``value`` reaches (0..7): the G.711 segment."""
    seg = np.zeros(value.shape, dtype=np.int32)
    for k in range(7):
        seg += value >= (first_limit << k)
    return seg


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = _LINEAR
    # G.191: absno = (x < 0 ? ~x : x) >> 2, biased by 33 and clipped to 13 bits.
    absno = np.minimum((np.where(x < 0, ~x, x) >> 2) + 33, 0x1FFF)
    seg = _segment(absno, 64)  # segno - 1 in G.191 terms
    mantissa = 15 - ((absno >> (seg + 1)) & 15)
    code = ((7 - seg) << 4) | mantissa
    return np.asarray(np.where(x >= 0, code | 0x80, code), dtype=np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    inv = ~_CODES & 0xFF
    exponent = (inv >> 4) & 7
    mantissa = inv & 15
    step = 8 << exponent
    magnitude = (128 << exponent) + step * mantissa + step // 2 - 132
    return np.asarray(np.where(_CODES < 128, -magnitude, magnitude), dtype=np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = _LINEAR
    ix = np.where(x < 0, ~x, x) >> 4  # 12-bit magnitude
    seg = _segment(ix, 32)  # 0 for ix < 32 (segments 0 and 1 share one step size)
    code = np.where(ix > 15, ((seg + 1) << 4) | ((ix >> seg) & 15), ix)
    return (np.where(x >= 0, code | 0x80, code) ^ 0x55).astype(np.uint8)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    ix = (_CODES ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = ix & 15
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    magnitude = (mantissa << 4) + 8
    magnitude = np.where(exponent > 1, magnitude << np.maximum(exponent - 1, 0), magnitude)
    return np.asarray(np.where(_CODES > 127, magnitude, -magnitude), dtype=np.int16)


def _runs(*parts: int | range) -> list[int]:
    out: list[int] = []
    for part in parts:
        out.extend(part if isinstance(part, range) else (part,))
    return out


# G.711 Table 3 / Table 4 as magnitude maps: index = position of a code in its own law counted from the
# smallest magnitude (µ-law: 0x7F ^ (code & 0x7F); A-law: (code ^ 0x55) & 0x7F), value = the magnitude
# position in the other law (µ->A is 1-based in the standard's numbering, A->µ 0-based).
_U2A_MAG = _runs(1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, range(9, 25), 25, 27, 29, 31,
                 range(33, 45), 46, 48, range(49, 63), range(64, 80), 80, range(82, 129))  # fmt: skip
_A2U_MAG = _runs(1, 3, 5, 7, 9, 11, 13, 15, range(16, 32), 32, 32, 33, 33, 34, 34, 35, 35, range(36, 48),
                 48, 48, 49, 49, range(50, 64), 64, 64, range(65, 81), range(80, 128))  # fmt: skip


def _build_ulaw_to_alaw() -> npt.NDArray[np.uint8]:
    mags = np.array(_U2A_MAG, dtype=np.int32) - 1
    pos = _CODES >= 128
    a_mag = mags[0x7F ^ (_CODES & 0x7F)]
    return np.asarray(np.where(pos, 0xD5 ^ a_mag, 0x55 ^ a_mag), dtype=np.uint8)


def _build_alaw_to_ulaw() -> npt.NDArray[np.uint8]:
    mags = np.array(_A2U_MAG, dtype=np.int32)
    pos = _CODES >= 128
    u_mag = mags[(_CODES ^ 0x55) & 0x7F]
    return np.asarray(np.where(pos, 0xFF ^ u_mag, 0x7F ^ u_mag), dtype=np.uint8)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


ULAW_ENCODE: npt.NDArray[np.uint8] = _frozen(_build_ulaw_encode())
ULAW_DECODE: npt.NDArray[np.int16] = _frozen(_build_ulaw_decode())
ALAW_ENCODE: npt.NDArray[np.uint8] = _frozen(_build_alaw_encode())
ALAW_DECODE: npt.NDArray[np.int16] = _frozen(_build_alaw_decode())
ULAW_TO_ALAW: npt.NDArray[np.uint8] = _frozen(_build_ulaw_to_alaw())
ALAW_TO_ULAW: npt.NDArray[np.uint8] = _frozen(_build_alaw_to_ulaw())


def _as_pcm_index(pcm: np.ndarray) -> np.ndarray:
    a = np.asarray(pcm)
    if a.dtype != np.int16:
        if a.dtype.kind not in "iu":
            raise TypeError(f"PCM must be an integer array, not {a.dtype}")
        a = np.clip(a, -32768, 32767).astype(np.int16)
    return a.view(np.uint16)


def _as_codes(codes: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    if isinstance(codes, bytes | bytearray | memoryview):
        return np.frombuffer(codes, dtype=np.uint8)
    a = np.asarray(codes)
    if a.dtype != np.uint8:
        if a.dtype.kind not in "iu":
            raise TypeError(f"G.711 codes must be an integer array, not {a.dtype}")
        a = a.astype(np.uint8)
    return a


def ulaw_encode(pcm: np.ndarray, out: np.ndarray | None = None) -> npt.NDArray[np.uint8]:
    """Encode int16 PCM (any shape) to µ-law codes of the same shape.

    Other integer dtypes are clipped to the int16 range first. ``out`` (uint8, same shape) avoids an
    allocation on hot paths.
    """
    return np.take(ULAW_ENCODE, _as_pcm_index(pcm), out=out)


def alaw_encode(pcm: np.ndarray, out: np.ndarray | None = None) -> npt.NDArray[np.uint8]:
    """Encode int16 PCM (any shape) to A-law codes of the same shape (see :func:`ulaw_encode`)."""
    return np.take(ALAW_ENCODE, _as_pcm_index(pcm), out=out)


def ulaw_decode(
    codes: np.ndarray | bytes | bytearray | memoryview, out: np.ndarray | None = None
) -> npt.NDArray[np.int16]:
    """Decode µ-law codes (uint8 array of any shape, or a bytes-like payload) to int16 PCM."""
    return np.take(ULAW_DECODE, _as_codes(codes), out=out)


def alaw_decode(
    codes: np.ndarray | bytes | bytearray | memoryview, out: np.ndarray | None = None
) -> npt.NDArray[np.int16]:
    """Decode A-law codes (uint8 array of any shape, or a bytes-like payload) to int16 PCM."""
    return np.take(ALAW_DECODE, _as_codes(codes), out=out)


def ulaw_to_alaw(codes: np.ndarray | bytes | bytearray | memoryview) -> npt.NDArray[np.uint8]:
    """Transcode µ-law codes to A-law with G.711 Table 3 (no trip through linear PCM)."""
    return np.take(ULAW_TO_ALAW, _as_codes(codes))


def alaw_to_ulaw(codes: np.ndarray | bytes | bytearray | memoryview) -> npt.NDArray[np.uint8]:
    """Transcode A-law codes to µ-law with G.711 Table 4."""
    return np.take(ALAW_TO_ULAW, _as_codes(codes))
