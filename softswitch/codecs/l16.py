"""L16: 16-bit linear PCM in network byte order (RFC 3551 §4.5.11)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["l16_decode", "l16_encode"]

_BE_INT16 = np.dtype(">i2")


def l16_encode(pcm: np.ndarray) -> bytes:
    """Serialise int16 PCM (any shape, flattened in C order) as big-endian bytes."""
    a = np.asarray(pcm)
    if a.dtype != np.int16:
        if a.dtype.kind not in "iu":
            raise TypeError(f"PCM must be an integer array, not {a.dtype}")
        a = np.clip(a, -32768, 32767)
    return a.astype(_BE_INT16).tobytes()


def l16_decode(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """Parse a big-endian L16 payload into a native int16 array; ValueError on an odd length."""
    if len(data) % 2:
        raise ValueError(f"L16 payload has odd length {len(data)}")
    return np.frombuffer(data, dtype=_BE_INT16).astype(np.int16)
