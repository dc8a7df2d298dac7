"""Call-progress tones: frequencies, levels, cadences, looping by frame index, pre-encoded G.711."""

from __future__ import annotations

import numpy as np
import pytest

from softswitch.codecs.g711 import alaw_encode, ulaw_decode, ulaw_encode
from softswitch.media.tones import LEVEL_DBFS, TONES, Cadence, tone_duration, tone_frame, tone_pcm

EXPECTED = {
    "ringback_cn": ((450,), (1.0, 4.0)),
    "busy_cn": ((450,), (0.35, 0.35)),
    "dial_cn": ((450,), ()),
    "ringback_us": ((440, 480), (2.0, 4.0)),
    "busy_us": ((480, 620), (0.5, 0.5)),
    "ringback_eu": ((425,), (1.0, 4.0)),
    "busy_eu": ((425,), (0.5, 0.5)),
    "beep": ((1000,), (0.2,)),
}


def _on_off(pcm: np.ndarray) -> list[tuple[bool, float]]:
    """Runs of tone on / off, measured on 10 ms blocks: (on, seconds)."""
    blocks = pcm[: len(pcm) // 80 * 80].reshape(-1, 80).astype(np.float64)
    on = np.sqrt((blocks**2).mean(axis=1)) > 300
    runs: list[tuple[bool, float]] = []
    for flag in on:
        if runs and runs[-1][0] == flag:
            runs[-1] = (bool(flag), runs[-1][1] + 0.01)
        else:
            runs.append((bool(flag), 0.01))
    return [(f, round(s, 2)) for f, s in runs]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_frequencies_and_level(name: str) -> None:
    freqs, pattern = EXPECTED[name]
    assert TONES[name].freqs == tuple(float(f) for f in freqs)
    assert TONES[name].pattern == pattern
    on_seconds = pattern[0] if pattern else 1.0
    pcm = tone_pcm(name, on_seconds)[400:-400].astype(np.float64)  # steady part of the first "on"
    power = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    bins = np.fft.rfftfreq(len(pcm), 1 / 8000)
    assert abs(bins[power.argmax()] - min(freqs, key=lambda f: abs(f - bins[power.argmax()]))) <= 3
    near = np.zeros(len(bins), dtype=bool)
    for f in freqs:
        band = np.abs(bins - f) <= 20
        near |= band
        assert power[band].sum() > 0.3 * power.sum() / len(freqs)  # each frequency is there
    assert power[near].sum() > 0.999 * power.sum()  # and nothing else
    # each frequency at LEVEL_DBFS: RMS of the sum = A * sqrt(n / 2)
    amplitude = np.sqrt(np.mean(pcm**2) * 2 / len(freqs))
    assert 20 * np.log10(amplitude / 32767) == pytest.approx(LEVEL_DBFS, abs=0.2)


@pytest.mark.parametrize(
    "name", ["ringback_cn", "busy_cn", "ringback_us", "busy_us", "ringback_eu", "busy_eu"]
)
def test_cadence(name: str) -> None:
    on, off = EXPECTED[name][1]
    runs = _on_off(tone_pcm(name, 3 * (on + off)))
    assert runs == [(True, on), (False, off)] * 3


def test_continuous_and_one_shot() -> None:
    assert _on_off(tone_pcm("dial_cn", 7.0)) == [(True, 7.0)]
    assert _on_off(tone_pcm("beep", 1.0)) == [(True, 0.2), (False, 0.8)]
    assert tone_duration("beep") == pytest.approx(0.2)
    assert tone_duration("busy_cn") is None
    assert not tone_frame("beep", 10).any()
    assert not tone_frame("beep", 10_000).any()
    assert bytes(tone_frame("beep", 50, "pcmu")) == bytes(ulaw_encode(np.zeros(160, dtype=np.int16)))


@pytest.mark.parametrize("name", sorted(TONES))
def test_frames_match_tone_pcm_and_loop(name: str) -> None:
    seconds = 13.0
    pcm = tone_pcm(name, seconds)
    assert pcm.dtype == np.int16
    assert len(pcm) == 8000 * seconds
    frames = np.concatenate([tone_frame(name, i) for i in range(int(seconds * 50))])
    assert np.array_equal(frames, pcm)
    frame = tone_frame(name, 3)
    assert isinstance(frame, np.ndarray)
    assert frame.shape == (160,)
    assert not frame.flags.writeable
    period = TONES[name].period
    if TONES[name].repeat:
        cycle = round((period or 1.0) * 50)
        assert np.array_equal(tone_frame(name, 7 + 1000 * cycle), tone_frame(name, 7))


def test_no_clicks_at_edges() -> None:
    pcm = tone_pcm("busy_cn", 1.4).astype(np.int32)
    assert np.abs(np.diff(pcm)).max() < 0.4 * 32767 * 10 ** (
        LEVEL_DBFS / 20
    )  # a 450 Hz sine moves < 0.36 A/sample
    edges = np.flatnonzero(np.diff((np.abs(pcm) > 0).astype(np.int8)))
    assert len(edges) >= 2


@pytest.mark.parametrize("codec", ["pcmu", "pcma", "l16"])
def test_encoded_frames(codec: str) -> None:
    for name in TONES:
        for i in (0, 1, 49, 50, 251, 1_000_003):
            pcm = tone_frame(name, i)
            data = tone_frame(name, i, codec)
            assert isinstance(data, memoryview)
            if codec == "pcmu":
                assert bytes(data) == ulaw_encode(pcm).tobytes()
            elif codec == "pcma":
                assert bytes(data) == alaw_encode(pcm).tobytes()
            else:
                assert bytes(data) == pcm.astype(">i2").tobytes()
    assert len(ulaw_decode(bytes(tone_frame("ringback_cn", 0, "pcmu")))) == 160


def test_errors() -> None:
    with pytest.raises(KeyError):
        tone_frame("nope", 0)
    with pytest.raises(ValueError):
        tone_frame("busy_cn", 0, "g729")
    with pytest.raises(KeyError):
        tone_pcm("nope", 1.0)


def test_cadence_type() -> None:
    c = Cadence((425.0,), (0.5, 0.5))
    assert c.period == 1.0
    assert Cadence((450.0,)).period is None
    with pytest.raises(AttributeError):
        c.freqs = (1.0,)  # type: ignore[misc]
