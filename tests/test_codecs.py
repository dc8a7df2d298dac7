"""G.711 bit-exactness (vs audioop, a scalar G.191 transcription and SoX vectors), L16, telephone-event."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from softswitch.codecs import (
    CODECS,
    L16,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    codec_by_name,
    codec_by_payload_type,
    g711,
)
from softswitch.codecs.l16 import l16_decode, l16_encode
from softswitch.codecs.telephone_event import (
    EVENTS,
    TelephoneEvent,
    decode_event,
    digit_event,
    encode_event,
    pack_event_into,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

VECTORS = Path(__file__).resolve().parent.parent / "codecs"
ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


def _audioop(name: str, data: bytes) -> bytes:
    result: bytes = getattr(audioop, name)(data, 2)
    return result


def ref_lin2ulaw(x: np.ndarray) -> np.ndarray:
    return np.frombuffer(_audioop("lin2ulaw", x.astype("<i2").tobytes()), np.uint8)


def ref_lin2alaw(x: np.ndarray) -> np.ndarray:
    return np.frombuffer(_audioop("lin2alaw", x.astype("<i2").tobytes()), np.uint8)


def ref_ulaw2lin(c: np.ndarray) -> np.ndarray:
    return np.frombuffer(_audioop("ulaw2lin", c.tobytes()), "<i2").astype(np.int16)


def ref_alaw2lin(c: np.ndarray) -> np.ndarray:
    return np.frombuffer(_audioop("alaw2lin", c.tobytes()), "<i2").astype(np.int16)


# Scalar transliteration of ITU-T G.191 g711.c (ulaw_compress / alaw_compress), independent of the
# vectorised table builder in the module.
def g191_ulaw_compress(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    code = ((8 - segno) << 4) | (15 - ((absno >> segno) & 15))
    return code | 0x80 if x >= 0 else code


def g191_alaw_compress(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 31:
            ix >>= 1
            iexp += 1
        ix += (iexp << 4) - 16
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


# ------------------------------------------------------------------------------------------- tables


def test_table_shapes_and_dtypes() -> None:
    assert g711.ULAW_ENCODE.shape == g711.ALAW_ENCODE.shape == (65536,)
    assert g711.ULAW_ENCODE.dtype == g711.ALAW_ENCODE.dtype == np.uint8
    assert g711.ULAW_DECODE.shape == g711.ALAW_DECODE.shape == (256,)
    assert g711.ULAW_DECODE.dtype == g711.ALAW_DECODE.dtype == np.int16
    assert g711.ULAW_TO_ALAW.dtype == g711.ALAW_TO_ULAW.dtype == np.uint8
    with pytest.raises(ValueError):
        g711.ULAW_ENCODE[0] = 1  # read-only: shared by every leg


def test_ulaw_encode_matches_g191_for_every_input() -> None:
    expected = np.array([g191_ulaw_compress(int(v)) for v in ALL_PCM], dtype=np.uint8)
    np.testing.assert_array_equal(g711.ulaw_encode(ALL_PCM), expected)


def test_alaw_encode_matches_g191_and_audioop_for_every_input() -> None:
    expected = np.array([g191_alaw_compress(int(v)) for v in ALL_PCM], dtype=np.uint8)
    ours = g711.alaw_encode(ALL_PCM)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(ours, ref_lin2alaw(ALL_PCM))


def test_decoders_match_audioop_for_every_code() -> None:
    np.testing.assert_array_equal(g711.ulaw_decode(ALL_CODES), ref_ulaw2lin(ALL_CODES))
    np.testing.assert_array_equal(g711.alaw_decode(ALL_CODES), ref_alaw2lin(ALL_CODES))


def test_ulaw_encode_vs_audioop_differs_only_on_negative_ties() -> None:
    """audioop (Sun g711.c) folds negatives with -x, G.191 with ~x: they disagree exactly at decision values."""
    ours = g711.ulaw_encode(ALL_PCM)
    ref = ref_lin2ulaw(ALL_PCM)
    diff = np.nonzero(ours != ref)[0]
    assert len(diff) == 508  # 127 negative decision values x 4 sixteen-bit inputs each
    x = ALL_PCM[diff].astype(np.int32)
    assert (x < 0).all()
    np.testing.assert_array_equal(np.abs(ours[diff].astype(int) - ref[diff].astype(int)), 1)
    # Folding with ~x instead of -x is the same as shifting the negative half by one 14-bit unit.
    neg = ALL_PCM < -4
    np.testing.assert_array_equal(ours[neg], ref_lin2ulaw(ALL_PCM[neg] + 4))
    tiny = (ALL_PCM >= -4) & (ALL_PCM < 0)
    assert (ours[tiny] == 0x7F).all() and (ref[tiny] == 0x7E).all()


def test_known_values() -> None:
    # Silence, full scale and the well-known idle codes.
    assert g711.ulaw_encode(np.array([0, 32767, -32768], np.int16)).tolist() == [0xFF, 0x80, 0x00]
    assert g711.alaw_encode(np.array([0, 32767, -32768], np.int16)).tolist() == [0xD5, 0xAA, 0x2A]
    assert g711.ULAW_DECODE[0xFF] == 0 and g711.ULAW_DECODE[0x7F] == 0
    assert g711.ULAW_DECODE[0x80] == 32124 and g711.ULAW_DECODE[0x00] == -32124
    assert g711.ALAW_DECODE[0xD5] == 8 and g711.ALAW_DECODE[0x55] == -8
    assert g711.ALAW_DECODE[0xAA] == 32256


def test_decode_then_encode_is_identity() -> None:
    # Every code except µ-law's "negative zero" 0x7F (decodes to 0 = 0xFF) survives a round trip.
    u = g711.ulaw_encode(g711.ulaw_decode(ALL_CODES))
    assert (u == ALL_CODES).sum() == 255 and u[0x7F] == 0xFF
    np.testing.assert_array_equal(g711.alaw_encode(g711.alaw_decode(ALL_CODES)), ALL_CODES)


def test_transcoding_tables() -> None:
    # G.711 Tables 3/4 keep signs and agree with decode-then-encode except at ties, where they pick the
    # neighbouring level.
    for table, dec_src, enc_dst, dec_dst, n_diff in (
        (g711.ULAW_TO_ALAW, g711.ULAW_DECODE, g711.ALAW_ENCODE, g711.ALAW_DECODE, 44),
        (g711.ALAW_TO_ULAW, g711.ALAW_DECODE, g711.ULAW_ENCODE, g711.ULAW_DECODE, 32),
    ):
        np.testing.assert_array_equal(table & 0x80, ALL_CODES & 0x80)
        naive = enc_dst[dec_src.view(np.uint16)]
        diff = np.nonzero(table != naive)[0]
        assert len(diff) == n_diff
        levels = np.unique(dec_dst.astype(np.int32))
        a = np.searchsorted(levels, dec_dst[table[diff]].astype(np.int32))
        b = np.searchsorted(levels, dec_dst[naive[diff]].astype(np.int32))
        assert (np.abs(a - b) == 1).all()
        # Monotonic: a larger magnitude never maps to a smaller one (codes listed from -max to +max).
        by_value = np.argsort(dec_src.astype(np.int32), kind="stable")
        assert (np.diff(dec_dst[table[by_value]].astype(np.int32)) >= 0).all()
    # Not transparent either way: where µ-law has fewer levels than A-law (and vice versa) codes merge.
    assert (g711.ULAW_TO_ALAW[g711.ALAW_TO_ULAW] != ALL_CODES).sum() == 16
    assert g711.ulaw_to_alaw(bytes([0xFF, 0x7F, 0x80])).tolist() == [0xD5, 0x55, 0xAA]
    assert g711.alaw_to_ulaw(np.array([0xD5, 0x55, 0xAA], np.uint8)).tolist() == [
        0xFE,
        0x7E,
        0x80,
    ]  # ±8 exists in both


# ---------------------------------------------------------------------------------------- array API


def test_any_shape_and_out_parameter() -> None:
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32768, size=(7, 160), dtype=np.int16)
    for enc, dec in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        codes = enc(pcm)
        assert codes.shape == (7, 160) and codes.dtype == np.uint8
        out = np.empty((7, 160), np.uint8)
        assert enc(pcm, out=out) is out
        np.testing.assert_array_equal(out, codes)
        np.testing.assert_array_equal(enc(pcm[:, ::2]), codes[:, ::2])  # non-contiguous view
        np.testing.assert_array_equal(enc(pcm[3]), codes[3])
        assert enc(np.array(5, np.int16)).shape == ()
        pcm_out = np.empty((7, 160), np.int16)
        assert dec(codes, out=pcm_out) is pcm_out
        np.testing.assert_array_equal(dec(codes[2].tobytes()), pcm_out[2])
        np.testing.assert_array_equal(dec(bytearray(codes[2].tobytes())), pcm_out[2])
        np.testing.assert_array_equal(dec(memoryview(codes[2].tobytes())), pcm_out[2])


def test_other_integer_dtypes_are_clipped() -> None:
    x = np.array([-100000, -32768, 0, 32767, 100000], np.int32)
    np.testing.assert_array_equal(
        g711.ulaw_encode(x), g711.ulaw_encode(np.array([-32768, -32768, 0, 32767, 32767], np.int16))
    )
    with pytest.raises(TypeError):
        g711.ulaw_encode(np.zeros(3, np.float32))


@given(hnp.arrays(np.int16, hnp.array_shapes(max_dims=3, max_side=20)))
def test_hypothesis_encode_decode_error_is_bounded(pcm: np.ndarray) -> None:
    for enc, dec in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        back = dec(enc(pcm)).astype(np.int32)
        x = pcm.astype(np.int32)
        # Quantisation error is at most half a step: step is 1/16 of the magnitude's segment (+ clipping).
        bound = np.maximum(np.abs(x) // 16, 16) + 1
        assert (np.abs(back - x) <= bound).all()
        np.testing.assert_array_equal(dec(enc(dec(enc(pcm)))), dec(enc(pcm)))  # idempotent after one pass


# ------------------------------------------------------------------------------------- SoX vectors


def _sox_round(x: np.ndarray, bits: int) -> np.ndarray:
    """SoX rounds 16-bit input to the nearest ``bits``-bit value before its G.711 coder (see codecs/README.md)."""
    shift = 16 - bits
    r = (x.astype(np.int32) + (1 << (shift - 1))) >> shift
    r = np.clip(r, -(1 << (bits - 1)), (1 << (bits - 1)) - 1) << shift
    out: np.ndarray = r.astype(np.int16)
    return out


def _read(name: str, dtype: str) -> np.ndarray:
    return np.fromfile(VECTORS / name, dtype=dtype)


@pytest.mark.parametrize("name", ["sine_1k", "chirp", "ramp"])
def test_sox_vectors(name: str) -> None:
    pcm = ALL_PCM if name == "ramp" else _read(f"{name}.raw", "<i2").astype(np.int16)
    assert len(pcm) in (8000, 65536)
    sox_ul = _read(f"{name}.ul", "u1")
    sox_al = _read(f"{name}.al", "u1")
    # A-law: our coder on SoX's rounded input reproduces SoX byte for byte.
    np.testing.assert_array_equal(g711.alaw_encode(_sox_round(pcm, 13)), sox_al)
    # µ-law: likewise, except at G.191-vs-Sun ties where SoX (Sun's coder) agrees with audioop.
    rounded = _sox_round(pcm, 14)
    ours = g711.ulaw_encode(rounded)
    mismatch = ours != sox_ul
    np.testing.assert_array_equal(sox_ul, ref_lin2ulaw(rounded))
    tie = ours != ref_lin2ulaw(rounded)
    np.testing.assert_array_equal(mismatch, tie)
    # On the raw input our coder is within one quantisation step of SoX everywhere.
    for ours_raw, sox, table in (
        (g711.ulaw_encode(pcm), sox_ul, g711.ULAW_DECODE),
        (g711.alaw_encode(pcm), sox_al, g711.ALAW_DECODE),
    ):
        bad = ours_raw != sox
        assert bad.mean() < 0.03
        levels = np.unique(table.astype(np.int32))
        a = np.searchsorted(levels, table[ours_raw[bad]].astype(np.int32))
        b = np.searchsorted(levels, table[sox[bad]].astype(np.int32))
        assert (np.abs(a - b) <= 1).all()  # 0 only for µ-law's +0/-0 (0xFF vs 0x7F)


def test_sox_decoders_agree_on_every_code() -> None:
    codes = _read("codes.bin", "u1")
    np.testing.assert_array_equal(codes, ALL_CODES)
    np.testing.assert_array_equal(g711.ulaw_decode(codes), _read("codes_ulaw_decoded.raw", "<i2"))
    np.testing.assert_array_equal(g711.alaw_decode(codes), _read("codes_alaw_decoded.raw", "<i2"))


DTMF_FREQS = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip


@pytest.mark.parametrize("digit", list(EVENTS))
def test_dtmf_vectors_hold_the_right_tones(digit: str) -> None:
    import soundfile as sf

    suffix = {"*": "star", "#": "hash"}.get(digit, digit)
    pcm, rate = sf.read(VECTORS / f"dtmf_{suffix}.wav", dtype="int16")
    assert rate == 8000 and pcm.ndim == 1 and len(pcm) == 800
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    low, high = DTMF_FREQS[digit]
    lo_band = (freqs > 600) & (freqs < 1000)
    hi_band = (freqs > 1150) & (freqs < 1700)
    assert abs(freqs[lo_band][np.argmax(spectrum[lo_band])] - low) <= 15
    assert abs(freqs[hi_band][np.argmax(spectrum[hi_band])] - high) <= 15
    assert 0.5 < np.abs(pcm).max() / 32768 < 0.8


def test_vector_folder_is_small() -> None:
    assert sum(p.stat().st_size for p in VECTORS.iterdir()) < 1_000_000


# --------------------------------------------------------------------------------------------- L16


def test_l16_round_trip_and_byte_order() -> None:
    pcm = np.array([0, 1, -1, 0x1234, -32768, 32767], np.int16)
    data = l16_encode(pcm)
    assert data[:8] == b"\x00\x00\x00\x01\xff\xff\x12\x34"
    back = l16_decode(data)
    assert back.dtype == np.int16 and back.dtype.isnative
    np.testing.assert_array_equal(back, pcm)
    assert l16_encode(np.array([70000, -70000], np.int32)) == b"\x7f\xff\x80\x00"
    with pytest.raises(ValueError):
        l16_decode(b"\x00\x01\x02")


@given(hnp.arrays(np.int16, st.integers(0, 400)))
def test_l16_hypothesis_round_trip(pcm: np.ndarray) -> None:
    data = l16_encode(pcm)
    assert len(data) == 2 * len(pcm)
    assert data == struct.pack(f">{len(pcm)}h", *pcm.tolist())
    np.testing.assert_array_equal(l16_decode(data), pcm)


# ------------------------------------------------------------------------------------------ registry


def test_registry() -> None:
    assert set(CODECS) == {"pcmu", "pcma", "l16"}
    assert (PCMU.payload_type, PCMA.payload_type, TELEPHONE_EVENT.payload_type) == (0, 8, 101)
    assert PCMU.rtpmap == "PCMU/8000" and TELEPHONE_EVENT.rtpmap == "telephone-event/8000"
    pcm = np.array([0, 1000, -1000], np.int16)
    assert PCMU.encode(pcm) == g711.ulaw_encode(pcm).tobytes()
    np.testing.assert_array_equal(PCMA.decode(PCMA.encode(pcm)), g711.alaw_decode(g711.alaw_encode(pcm)))
    np.testing.assert_array_equal(L16.decode(L16.encode(pcm)), pcm)
    with pytest.raises(TypeError):
        TELEPHONE_EVENT.encode(pcm)
    assert codec_by_payload_type(0) is PCMU and codec_by_payload_type(8) is PCMA
    assert codec_by_payload_type(96) is None
    te = codec_by_payload_type(96, {96: "telephone-event", 0: "PCMU"})
    assert te is not None and te.name == "telephone-event" and te.payload_type == 96
    l16 = codec_by_payload_type(97, {97: "L16"})
    assert l16 is not None and l16.name == "l16" and l16.payload_type == 97
    assert codec_by_payload_type(0, {0: "PCMU"}) is PCMU
    assert codec_by_payload_type(98, {98: "opus"}) is None
    assert codec_by_name("PCMA") is PCMA


# -------------------------------------------------------------------------------- telephone-event


@pytest.mark.parametrize("event", range(16))
def test_telephone_event_all_dtmf_events(event: int) -> None:
    for end, volume, duration in ((False, 10, 160), (True, 10, 800), (True, 63, 65535), (False, 0, 0)):
        ev = TelephoneEvent(event, end, volume, duration)
        data = encode_event(ev)
        assert len(data) == 4
        assert data[0] == event
        assert data[1] == (0x80 if end else 0) | volume
        assert int.from_bytes(data[2:], "big") == duration
        assert decode_event(data) == ev
        buf = bytearray(16)
        pack_event_into(buf, 12, event, end, volume, duration)
        assert bytes(buf[12:]) == data and buf[:12] == bytes(12)
    assert TelephoneEvent(event, False, 10, 0).digit == EVENTS[event]
    assert digit_event(EVENTS[event]) == event


def test_telephone_event_errors_and_reserved_bit() -> None:
    with pytest.raises(ValueError):
        decode_event(b"\x01\x8a\x00")
    assert decode_event(b"\x05\xca\x03\x20") == TelephoneEvent(5, True, 10, 800)  # R bit ignored
    assert decode_event(b"\x05\x0a\x00\xa0\xff\xff") == TelephoneEvent(5, False, 10, 160)
    assert TelephoneEvent(16, False, 0, 0).digit is None
    for bad in ((256, False, 0, 0), (1, False, 64, 0), (1, False, 0, 65536), (-1, False, 0, 0)):
        with pytest.raises(ValueError):
            TelephoneEvent(*bad)
    assert digit_event("a") == 12 and digit_event("#") == 11
    for bad_digit in ("E", "", "12"):
        with pytest.raises(ValueError):
            digit_event(bad_digit)


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 65535))
def test_telephone_event_hypothesis_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    ev = TelephoneEvent(event, end, volume, duration)
    assert decode_event(encode_event(ev)) == ev
    buf = bytearray(4)
    pack_event_into(buf, 0, event, end, volume, duration)
    assert bytes(buf) == encode_event(ev)
