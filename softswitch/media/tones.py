"""Call-progress tones (ringback, busy, dial, beep) as 8 kHz int16 PCM or pre-encoded G.711 frames.

A tone is a :class:`Cadence`: its frequencies (summed, each at ``LEVEL_DBFS``) switched on and off by a
pattern of durations. One period of each tone is built once (cached) and frames are sliced out of it, so a
tone can be looped forever: :func:`tone_frame` gives frame ``i`` (20 ms) of a named tone, as PCM or as the
payload bytes of a codec. On/off edges have short raised-cosine ramps (no clicks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import overload

import numpy as np

from ..codecs.g711 import alaw_encode, ulaw_encode

__all__ = ["LEVEL_DBFS", "TONES", "Cadence", "tone_duration", "tone_frame", "tone_pcm"]

RATE = 8000
FRAME = 160
LEVEL_DBFS = -10.0  # per frequency, sine peak relative to int16 full scale
RAMP = 32  # samples (4 ms) of fade in/out at each on/off edge


@dataclass(frozen=True, slots=True)
class Cadence:
    """``freqs`` (Hz) played together; ``pattern``: on, off, on, off... durations in seconds.

    An empty pattern is a continuous tone. ``repeat=False`` plays the pattern once, then silence.
    """

    freqs: tuple[float, ...]
    pattern: tuple[float, ...] = ()
    repeat: bool = True

    @property
    def period(self) -> float | None:
        """Seconds of one cadence cycle; None for a continuous tone."""
        return sum(self.pattern) if self.pattern else None


TONES: dict[str, Cadence] = {
    "ringback_cn": Cadence((450.0,), (1.0, 4.0)),
    "busy_cn": Cadence((450.0,), (0.35, 0.35)),
    "dial_cn": Cadence((450.0,)),
    "ringback_us": Cadence((440.0, 480.0), (2.0, 4.0)),
    "busy_us": Cadence((480.0, 620.0), (0.5, 0.5)),
    "dial_us": Cadence((350.0, 440.0)),
    "ringback_eu": Cadence((425.0,), (1.0, 4.0)),
    "busy_eu": Cadence((425.0,), (0.5, 0.5)),
    "dial_eu": Cadence((425.0,)),
    "beep": Cadence((1000.0,), (0.2,), repeat=False),
}


def _render(cadence: Cadence, n: int) -> np.ndarray:
    """``n`` samples of the cadence from its start (float64, not looped)."""
    t = np.arange(n) / RATE
    amp = 32767 * 10 ** (LEVEL_DBFS / 20)
    wave = sum(amp * np.sin(2 * np.pi * f * t) for f in cadence.freqs)
    wave = np.asarray(wave, dtype=np.float64)
    if not cadence.pattern:
        return wave
    gate = np.zeros(n)
    start = 0.0
    for k, seconds in enumerate(cadence.pattern):
        a, b = round(start * RATE), min(round((start + seconds) * RATE), n)
        start += seconds
        if k % 2 or a >= b:
            continue
        gate[a:b] = 1.0
        r = min(RAMP, (b - a) // 2)
        if r:
            ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
            gate[a : a + r] = ramp
            gate[b - r : b] = ramp[::-1]
    return wave * gate


@cache
def _period_pcm(name: str) -> np.ndarray:
    """One loop of the tone, a whole number of frames long (read-only int16)."""
    cadence = TONES[name]
    if cadence.pattern:
        length = round(sum(cadence.pattern) * RATE)
        # looped: whole frames and whole cadence cycles; one-shot: rounded up to whole frames
        length = math.lcm(length, FRAME) if cadence.repeat else -(-length // FRAME) * FRAME
    else:
        length = RATE  # one second: integer frequencies complete whole cycles
    pcm = np.clip(np.round(_render(cadence, length)), -32768, 32767).astype(np.int16)
    pcm.flags.writeable = False
    return pcm


@cache
def _period_encoded(name: str, codec: str) -> memoryview:
    pcm = _period_pcm(name)
    if codec == "pcmu":
        data = ulaw_encode(pcm).tobytes()
    elif codec == "pcma":
        data = alaw_encode(pcm).tobytes()
    elif codec == "l16":
        data = pcm.astype(">i2").tobytes()
    else:
        raise ValueError(f"unsupported codec {codec!r} for tones (pcmu, pcma, l16)")
    return memoryview(data)


_SILENT_PCM = np.zeros(FRAME, dtype=np.int16)
_SILENT_PCM.flags.writeable = False


@cache
def _silent_encoded(codec: str) -> memoryview:
    if codec == "pcmu":
        return memoryview(ulaw_encode(_SILENT_PCM).tobytes())
    if codec == "pcma":
        return memoryview(alaw_encode(_SILENT_PCM).tobytes())
    if codec == "l16":
        return memoryview(bytes(2 * FRAME))
    raise ValueError(f"unsupported codec {codec!r} for tones (pcmu, pcma, l16)")


@overload
def tone_frame(name: str, index: int, codec: None = None) -> np.ndarray: ...
@overload
def tone_frame(name: str, index: int, codec: str) -> memoryview: ...
def tone_frame(name: str, index: int, codec: str | None = None) -> np.ndarray | memoryview:
    """Frame ``index`` (20 ms, counted from the tone's start) of tone ``name``; loops forever.

    With ``codec`` None: a read-only (160,) int16 array. With ``codec`` "pcmu" or "pcma": a memoryview of the
    160 payload bytes ("l16": 320 big-endian bytes), sliced from a cached encoding (no work per call).
    A one-shot tone (``repeat=False``) gives silence after its end. KeyError for an unknown name.
    """
    cadence = TONES[name]
    if codec is None:
        pcm = _period_pcm(name)
        frames = len(pcm) // FRAME
        if not cadence.repeat and index >= frames:
            return _SILENT_PCM
        i = index % frames
        return pcm[i * FRAME : (i + 1) * FRAME]
    data = _period_encoded(name, codec)
    size = FRAME * (2 if codec == "l16" else 1)
    frames = len(data) // size
    if not cadence.repeat and index >= frames:
        return _silent_encoded(codec)
    i = index % frames
    return data[i * size : (i + 1) * size]


def tone_pcm(name: str, seconds: float) -> np.ndarray:
    """``seconds`` of tone ``name`` from its start as a new int16 array (looped, or padded with silence)."""
    n = round(seconds * RATE)
    pcm = _period_pcm(name)
    if TONES[name].repeat:
        reps = -(-n // len(pcm))
        return np.tile(pcm, reps)[:n].copy()
    out = np.zeros(n, dtype=np.int16)
    m = min(n, len(pcm))
    out[:m] = pcm[:m]
    return out


def tone_duration(name: str) -> float | None:
    """Seconds until a one-shot tone ends (rounded up to whole frames); None for looping tones."""
    cadence = TONES[name]
    if cadence.repeat:
        return None
    return len(_period_pcm(name)) / RATE
