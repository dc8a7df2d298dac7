"""DTMF: in-band detection (Q.24 limits, talk-off on speech and music) and RFC 4733 send/receive.

Test audio is made with sox and espeak-ng and always goes through a G.711 µ-law round trip, since the engine
detects on decoded G.711. Levels are per tone in dBm0 (a 0 dBm0 sine peaks at 22 690 in int16 PCM).
"""

from __future__ import annotations

import functools
import itertools
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.codecs.g711 import ulaw_decode, ulaw_encode
from softswitch.codecs.telephone_event import EVENTS, TelephoneEvent, decode_event
from softswitch.media.dtmf import (
    DBM0_AMPLITUDE,
    DIGITS,
    GAP,
    HIGH_FREQS,
    LOW_FREQS,
    GoertzelDetector,
    Rfc4733Receiver,
    Rfc4733Sender,
)
from softswitch.media.tones import TONES, tone_pcm
from tests.tools import require_tool

RAW = ["-r", "8000", "-b", "16", "-c", "1", "-e", "signed-integer", "-t", "raw", "-"]

# ------------------------------------------------------------------------------------------- audio helpers


@functools.cache
def _sox_synth(*args: str) -> np.ndarray:
    require_tool("sox")
    out = subprocess.run(["sox", "-n", *RAW, *args], capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype=np.int16).astype(np.float64)


def _vol(dbm0: float) -> str:
    """sox ``vol`` argument for a sine of ``dbm0``: after ``vol G dB`` a synth sine peaks at G dBFS.

    (Without a gain below 0 dB, sox synth leaves 3 dB of headroom; the levels test checks the result.)
    """
    return f"{dbm0 + 20 * np.log10(DBM0_AMPLITUDE / 32767):.3f}dB"


def sine(freq: float, seconds: float, dbm0: float) -> np.ndarray:
    return _sox_synth("synth", f"{seconds}", "sine", f"{freq:.3f}", "vol", _vol(dbm0))


def dual(freq1: float, freq2: float, seconds: float, dbm0: float) -> np.ndarray:
    """Two equal sines in one sox command (sox mixes the two synth channels down, halving each: +6 dB)."""
    return _sox_synth(
        "synth", f"{seconds}", "sine", f"{freq1:.3f}", "sine", f"{freq2:.3f}", "vol", _vol(dbm0 + 6.0206)
    )


def g711(x: np.ndarray) -> np.ndarray:
    """µ-law round trip of float PCM (clipped to int16)."""
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm))


def tone_pair(
    digit: str,
    seconds: float = 0.08,
    low_dbm0: float = -10,
    high_dbm0: float = -10,
    low_dev: float = 0.0,
    high_dev: float = 0.0,
) -> np.ndarray:
    """A DTMF digit from two separately scaled sines, mixed, through G.711."""
    row, col = divmod(DIGITS.index(digit), 4)
    n = round(seconds * 8000)
    low = sine(LOW_FREQS[row] * (1 + low_dev), seconds, low_dbm0)[:n]
    high = sine(HIGH_FREQS[col] * (1 + high_dev), seconds, high_dbm0)[:n]
    return g711(low + high)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * 8000), dtype=np.int16)


def detect_many(signals: list[np.ndarray], leads: list[int] | None = None) -> list[str]:
    """Run each signal on its own leg of one detector, all legs batched in every process() call."""
    n = len(signals)
    leads = leads or [0] * n
    length = max(lead + len(s) for lead, s in zip(leads, signals, strict=True)) + 480
    length += -length % 160
    pcm = np.zeros((n, length), dtype=np.int16)
    for i, (lead, s) in enumerate(zip(leads, signals, strict=True)):
        pcm[i, lead : lead + len(s)] = s
    detector = GoertzelDetector(n + 7)
    slots = np.arange(n, dtype=np.int64) * 7 % (n + 7)  # scattered slots
    found = [""] * n
    where = {int(s): i for i, s in enumerate(slots)}
    for k in range(length // 160):
        for slot, digit in detector.process(slots, pcm[:, k * 160 : (k + 1) * 160]):
            found[where[slot]] += digit
    return found


def detect(signal: np.ndarray, lead: int = 0) -> str:
    return detect_many([signal], [lead])[0]


def level_dbm0(pcm: np.ndarray) -> float:
    """RMS level of a signal in dBm0 (a sine's)."""
    rms = float(np.sqrt(np.mean(np.asarray(pcm, dtype=np.float64) ** 2)))
    return 20 * float(np.log10(rms * np.sqrt(2) / DBM0_AMPLITUDE))


def scale_to(pcm: np.ndarray, dbm0: float) -> np.ndarray:
    """Scale to an RMS level of ``dbm0`` (counted like a sine's) and G.711 round trip."""
    return g711(np.asarray(pcm, dtype=np.float64) * 10 ** ((dbm0 - level_dbm0(pcm)) / 20))


# ------------------------------------------------------------------------------------------- detection


def test_levels_are_calibrated() -> None:
    x = tone_pair("5", 0.5, -20, -20)
    assert abs(level_dbm0(x) - (-20 + 3.0103)) < 0.2  # two tones: +3 dB
    assert abs(level_dbm0(dual(770, 1336, 0.5, -20)) - (-20 + 3.0103)) < 0.2


@pytest.mark.parametrize("dbm0", [-4, -10, -20, -26])
def test_all_digits_at_levels(dbm0: float) -> None:
    signals = [g711(dual(LOW_FREQS[i // 4], HIGH_FREQS[i % 4], 0.08, dbm0)) for i in range(16)]
    assert detect_many(signals) == list(DIGITS)


def test_too_quiet_is_not_a_digit() -> None:
    assert detect_many([tone_pair(d, 0.2, -40, -40) for d in DIGITS]) == [""] * 16


@pytest.mark.parametrize(
    ("twist_db", "detected"),
    [(4, True), (-4, True), (-8, True), (0, True), (8, False), (-14, False)],
)
def test_twist(twist_db: float, detected: bool) -> None:
    """twist = high group level - low group level (Q.24: accept +4 / -8 dB)."""
    signals = [tone_pair(d, 0.1, -12 - twist_db / 2, -12 + twist_db / 2) for d in DIGITS]
    assert detect_many(signals) == (list(DIGITS) if detected else [""] * 16)


@pytest.mark.parametrize(
    ("deviation", "detected"), [(0.01, True), (0.015, True), (0.035, False), (0.05, False)]
)
@pytest.mark.parametrize("which", ["low", "high", "both"])
@pytest.mark.parametrize("sign", [1, -1])
def test_frequency_deviation(deviation: float, detected: bool, which: str, sign: int) -> None:
    dev = sign * deviation
    signals = [
        tone_pair(d, 0.1, low_dev=dev if which != "high" else 0.0, high_dev=dev if which != "low" else 0.0)
        for d in DIGITS
    ]
    assert detect_many(signals) == (list(DIGITS) if detected else [""] * 16)


def test_worst_case_combinations_at_45_ms() -> None:
    """Twist at the limits, 1.5 % off and low level together, at every alignment with the frames."""
    signals, leads, expected = [], [], []
    for d in DIGITS:
        for level, twist, dev in [
            (-12, 4, 0.015),
            (-12, -8, 0.015),
            (-12, -8, -0.015),
            (-12, 4, -0.015),
            (-25, 0, 0.015),
        ]:
            x = tone_pair(d, 0.045, level - twist / 2, level + twist / 2, dev, dev)
            for lead in range(0, 160, 20):
                signals.append(x)
                leads.append(lead)
                expected.append(d)
    assert detect_many(signals, leads) == expected


@pytest.mark.parametrize(("ms", "detected"), [(20, False), (25, False), (40, True), (45, True)])
def test_duration_at_every_alignment(ms: int, detected: bool) -> None:
    signals, leads = [], []
    for d in "1*0D":
        x = tone_pair(d, ms / 1000)
        for lead in range(0, 160, 4):
            signals.append(x)
            leads.append(lead)
    expected = [d for d in "1*0D" for _ in range(0, 160, 4)] if detected else [""] * len(signals)
    assert detect_many(signals, leads) == expected


def test_sequence_with_50_ms_gaps() -> None:
    for text in (DIGITS, "1122334455", "9999", "0#0#"):
        parts = []
        for d in text:
            parts += [tone_pair(d, 0.05, -15, -15), silence(0.05)]
        x = np.concatenate(parts)
        assert detect_many([x, x, x], [0, 37, 111]) == [text] * 3


def test_held_digit_is_one_digit() -> None:
    held = tone_pair("7", 1.0)
    dropout = held.copy()
    dropout[4000:4080] = 0  # 10 ms interruption: not a pause (Q.24)
    again = np.concatenate([held[:4000], silence(0.05), held[4000:]])  # a real 50 ms pause: two digits
    assert detect_many([held, dropout, again]) == ["7", "7", "77"]


def test_noise_tolerance() -> None:
    rng = np.random.default_rng(7)
    x = tone_pair("5", 0.2, -15, -15).astype(np.float64)
    noise = rng.standard_normal(len(x))
    noise *= 10 ** ((level_dbm0(x) - 20 - level_dbm0(noise)) / 20)  # SNR 20 dB over the whole band
    assert detect(g711(x + noise)) == "5"
    assert detect(g711(noise * 10)) == ""  # noise alone at a high level


def test_batched_legs_are_independent() -> None:
    det = GoertzelDetector(50)
    a = tone_pair("1", 0.2)
    b = tone_pair("#", 0.2)
    pcm = np.zeros((3, 2400), dtype=np.int16)
    pcm[0, : len(a)] = a
    pcm[2, 800 : 800 + len(b)] = b
    slots = np.array([40, 3, 17])
    got: list[tuple[int, str]] = []
    for k in range(15):
        got += det.process(slots, pcm[:, k * 160 : (k + 1) * 160])
        if k == 3:  # a leg missing from some calls keeps its state
            got += det.process(slots[1:2], pcm[1:2, 0:160])
    assert sorted(got) == [(17, "#"), (40, "1")]
    assert det.process(np.array([], dtype=np.int64), np.zeros((0, 160), dtype=np.int16)) == []


def test_reset_forgets_the_leg() -> None:
    det = GoertzelDetector(4)
    x = tone_pair("9", 1.0)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    got = [d for f in frames[:10] for _, d in det.process(np.array([2]), f[None])]
    assert got == ["9"]
    det.reset(2)  # a new leg with the key still pressed: reported again
    got = [d for f in frames[10:] for _, d in det.process(np.array([2]), f[None])]
    assert got == ["9"]


# ------------------------------------------------------------------------------------- talk-off: speech


SPEECH = {
    "en": [
        "Welcome to the brokerage hotline. Please enter your account number, followed by the pound key.",
        "Your cash balance is one hundred twenty three thousand four hundred fifty six dollars and seventy eight cents.",
        "Press one for stock quotes, two to place an order, three for your positions, or zero for an agent.",
        "The last price of six zero zero five one nine is one thousand seven hundred eighty nine point five.",
        "Nine, eight, seven, six, five, four, three, two, one, zero. Star. Hash. 1 2 3 4 5 6 7 8 9 0.",
    ],
    "cmn": [
        "您好、欢迎致电证券服务热线、请输入您的资金账号、以井号键结束。",
        "您的可用资金为十二万三千四百五十六元七角八分。",
        "查询行情请按一、委托下单请按二、查询持仓请按三、人工服务请按零。",
        "贵州茅台、六零零五一九、最新价一千七百八十九点五元、涨幅百分之二点三。",
        "一二三四五六七八九零、幺两三四五六七八九零。",
    ],
}


@functools.cache
def _espeak(voice: str, text: str, speed: int, pitch: int, tmp: Path) -> np.ndarray:
    wav = tmp / f"{voice}-{abs(hash((text, speed, pitch)))}.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(["sox", str(wav), *RAW], check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype=np.int16).astype(np.float64)


@pytest.mark.parametrize("voice", ["en", "cmn"])
def test_no_digits_in_speech(voice: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    require_tool("espeak-ng")
    require_tool("sox")
    tmp = tmp_path_factory.mktemp("speech")
    signals = []
    for i, text in enumerate(SPEECH[voice]):
        speech = _espeak(voice, text, 130 + 20 * i, 30 + 10 * i, tmp)
        assert len(speech) > 8000
        for level in (-5, -15, -25, -35):
            signals.append(scale_to(speech, level))
    assert detect_many(signals) == [""] * len(signals)
    # not even a single 20 ms window that looks like a digit
    det = GoertzelDetector(len(signals))
    length = min(len(s) for s in signals) // 160 * 160
    pcm = np.stack([s[:length] for s in signals])
    slots = np.arange(len(signals))
    hits = sum(int((det.classify(slots, pcm[:, k : k + 160]) >= 0).sum()) for k in range(0, length, 160))
    assert hits == 0


# -------------------------------------------------------------------------------------- talk-off: music


def _notes(instrument: str, notes: list[str], seconds: float) -> np.ndarray:
    return np.concatenate([_sox_synth("synth", f"{seconds}", instrument, n) for n in notes])


def _music() -> dict[str, np.ndarray]:
    arpeggio = [
        "C4",
        "E4",
        "G4",
        "C5",
        "E5",
        "G5",
        "C6",
        "G5",
        "E5",
        "C5",
        "A3",
        "C4",
        "E4",
        "A4",
        "C5",
        "E5",
    ]
    arpeggio += [
        "F3",
        "A3",
        "C4",
        "F4",
        "A4",
        "C5",
        "G3",
        "B3",
        "D4",
        "G4",
        "B4",
        "D5",
        "F5",
        "D5",
        "B4",
        "G4",
    ]
    melody = ["E5", "D5", "C5", "D5", "E5", "E5", "E5", "D5", "D5", "D5", "E5", "G5", "G5", "F5", "A5", "B5"]
    return {
        "pluck chord": _sox_synth("synth", "5", "pluck", "C4", "pluck", "E4", "pluck", "G4"),
        "pluck chord high": _sox_synth(
            "synth", "3", "pluck", "F5", "pluck", "A5", "pluck", "C6", "pluck", "E6"
        ),
        "organ chords": np.concatenate(
            [
                _sox_synth("synth", "1", "sine", a, "sine", b, "sine", c, "sine", d)
                for a, b, c, d in [
                    ("C4", "E4", "G4", "C5"),
                    ("F4", "A4", "C5", "F5"),
                    ("G4", "B4", "D5", "G5"),
                ]
            ]
        ),
        "sweep": _sox_synth("synth", "6", "sine", "300-3400"),
        "sweep down, square": _sox_synth("synth", "4", "square", "1800-200"),
        "arpeggio pluck": _notes("pluck", arpeggio, 0.18),
        "arpeggio triangle": _notes("triangle", arpeggio, 0.25),
        "melody sawtooth": _notes("sawtooth", melody, 0.3),
        "hold music": np.concatenate(
            [
                _sox_synth("synth", "0.4", "pluck", bass, "pluck", n1, "pluck", n2, "tremolo", "5", "40")
                for bass, n1, n2 in [
                    ("C3", "E5", "G5"),
                    ("A2", "C5", "E5"),
                    ("F2", "A4", "C5"),
                    ("G2", "B4", "D5"),
                ]
                * 3
            ]
        ),
    }


def test_no_digits_in_music() -> None:
    music = _music()
    names, signals = [], []
    for name, x in music.items():
        for level in (-5, -15, -25):
            names.append(f"{name} @ {level}")
            signals.append(scale_to(x, level))
    got = detect_many(signals)
    assert {n: g for n, g in zip(names, got, strict=True) if g} == {}


def test_no_digits_in_call_progress_tones() -> None:
    signals = [g711(tone_pcm(name, 12.0)) for name in TONES]
    assert detect_many(signals) == [""] * len(TONES)


# ------------------------------------------------------------------------------------------- RFC 4733


def _ev(event: int, duration: int, end: bool = False, volume: int = 10) -> TelephoneEvent:
    return TelephoneEvent(event, end, volume, duration)


def _feed_all(rx: Rfc4733Receiver, packets: list[tuple[int, TelephoneEvent, bool]]) -> list[str]:
    return [d for ts, ev, m in packets if (d := rx.feed(ts, ev, m)) is not None]


def _event_packets(ts: int, event: int, ticks: int = 5) -> list[tuple[int, TelephoneEvent, bool]]:
    pkts = [(ts, _ev(event, 160 * (k + 1)), k == 0) for k in range(ticks - 1)]
    pkts += [(ts, _ev(event, 160 * ticks, True), False)] * 3
    return pkts


def test_receiver_one_digit_per_event_and_duration() -> None:
    rx = Rfc4733Receiver()
    assert _feed_all(rx, _event_packets(1000, 5)) == ["5"]
    assert rx.pop_completed() == ("5", 100)
    assert rx.pop_completed() is None
    assert rx.digit is None
    # same digit again: new timestamp
    assert _feed_all(rx, _event_packets(2600, 5, ticks=12)) == ["5"]
    assert rx.completed == ("5", 240)


def test_receiver_all_events_and_non_dtmf_ignored() -> None:
    rx = Rfc4733Receiver()
    packets = []
    for i in range(16):
        packets += _event_packets(10_000 + 2000 * i, i)
    assert "".join(_feed_all(rx, packets)) == EVENTS
    assert rx.feed(99_000, _ev(16, 160), True) is None  # flash hook: not a digit
    assert rx.feed(99_000, _ev(32, 160), True) is None


def test_receiver_lost_start_packets() -> None:
    rx = Rfc4733Receiver()
    pkts = _event_packets(5000, 1)
    assert _feed_all(rx, pkts[2:]) == ["1"]  # start packet (marker) and one update lost
    pkts = _event_packets(9000, 2)
    assert _feed_all(rx, pkts[4:]) == ["2"]  # only the end packets arrived
    assert rx.completed == ("2", 100)
    assert _feed_all(rx, pkts[4:]) == []  # duplicates of the end


def test_receiver_missing_end_completes_on_next_event() -> None:
    rx = Rfc4733Receiver()
    assert _feed_all(rx, _event_packets(100, 3)[:3]) == ["3"]
    assert rx.digit == "3"
    assert rx.completed is None
    assert _feed_all(rx, _event_packets(2000, 4)) == ["4"]
    assert rx.pop_completed() == ("4", 100)  # 3 completed first (60 ms seen), then 4


def test_receiver_late_old_packets_and_marker_rules() -> None:
    rx = Rfc4733Receiver()
    first = _event_packets(50_000, 6)
    second = _event_packets(52_000, 7)
    assert _feed_all(rx, first + second) == ["6", "7"]
    assert _feed_all(rx, first[-1:]) == []  # a late end packet of the previous event
    assert rx.feed(52_000, _ev(7, 160), True) is None  # retransmitted start (marker, same event)
    assert rx.feed(52_000, _ev(8, 160), True) == "8"  # marker with a different event: new event
    assert rx.feed(52_000, _ev(9, 320), False) is None  # inconsistent packet without marker: ignored


def test_receiver_timestamp_wrap() -> None:
    rx = Rfc4733Receiver()
    assert _feed_all(rx, _event_packets(0xFFFF_FF00, 1)) == ["1"]
    assert _feed_all(rx, _event_packets(0x0000_0500, 2)) == ["2"]  # after the wrap: newer
    assert _feed_all(rx, _event_packets(0xFFFF_FF00, 1)) == []  # before it: old


def test_receiver_long_event_segments() -> None:
    """RFC 4733 §2.5.2.3: an event longer than 65535 units continues with a new timestamp, no marker."""
    rx = Rfc4733Receiver()
    ts = 1_000
    assert rx.feed(ts, _ev(0, 160), True) == "0"
    assert rx.feed(ts, _ev(0, 0xFFFF), False) is None
    assert rx.feed(ts + 0xFFFF, _ev(0, 160), False) is None
    assert rx.feed(ts + 0xFFFF, _ev(0, 8000, True), False) is None
    assert rx.pop_completed() == ("0", (0xFFFF + 8000) * 1000 // 8000)


def test_sender_packets() -> None:
    tx = Rfc4733Sender("1#", duration_ms=100, gap_ms=100, volume=12)
    steps = list(tx)
    assert tx.done
    assert tx.next_packet() is None
    events = [decode_event(p) if p else None for p, _, _, _ in steps]
    # event 1: 5 packets (the 5th with E), 2 more end copies; gap: 5 ticks - 2 = 3 empty ticks; event #
    assert len(steps) == 7 + 3 + 7
    assert [s[1] for s in steps] == [True] + [False] * 9 + [True] + [False] * 6
    assert [s[2] for s in steps[:7]] == [0, 1, 2, 3, 4, 5, 6]
    assert steps[7:10] == [GAP] * 3
    first = events[:7]
    assert [e.duration for e in first if e] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in first if e] == [False] * 4 + [True] * 3
    assert {(e.event, e.volume) for e in first if e} == {(1, 12)}
    assert {e.event for e in events[10:] if e} == {11}


def test_sender_timestamps_and_round_trip() -> None:
    tx = Rfc4733Sender("0123456789*#ABCD", duration_ms=60, gap_ms=60)
    rx = Rfc4733Receiver()
    base = 123_456
    got, stamps = [], []
    for tick, (payload, marker, ts_offset, _end) in enumerate(tx):
        if not payload:
            continue
        ts = base + 160 * (tick - ts_offset)
        stamps.append(ts)
        if (d := rx.feed(ts, decode_event(payload), marker)) is not None:
            got.append(d)
    assert "".join(got) == EVENTS
    starts = sorted(set(stamps))
    assert len(starts) == 16
    assert all(b - a >= 160 * (3 + 3) for a, b in itertools.pairwise(starts))  # 60 ms + 60 ms gap
    assert rx.completed == ("D", 60)


def test_sender_plan_appends_and_validates() -> None:
    tx = Rfc4733Sender()
    assert tx.done
    tx.plan("1")
    with pytest.raises(ValueError):
        tx.plan("12x")
    tx.plan("a", duration_ms=40)
    events = [decode_event(s[0]).event for s in tx if s[0]]
    assert events == [1] * 7 + [12] * 4


@settings(max_examples=60, deadline=None)
@given(
    digits=st.text(alphabet=EVENTS, min_size=1, max_size=8),
    duration=st.integers(20, 300),
    drops=st.lists(st.booleans(), min_size=200, max_size=200),
)
def test_round_trip_with_packet_loss(digits: str, duration: int, drops: list[bool]) -> None:
    """Any loss that leaves at least one packet of each event still gives every digit exactly once."""
    tx = Rfc4733Sender(digits, duration_ms=duration)
    rx = Rfc4733Receiver()
    steps = list(tx)
    got = []
    seen_ts: set[int] = set()
    for tick, (payload, marker, ts_offset, _end) in enumerate(steps):
        if not payload:
            continue
        ts = 8000 + 160 * (tick - ts_offset)
        last_of_event = tick + 1 == len(steps) or not steps[tick + 1][0]
        if drops[tick % len(drops)] and not (last_of_event and ts not in seen_ts):
            continue
        seen_ts.add(ts)
        if (d := rx.feed(ts, decode_event(payload), marker)) is not None:
            got.append(d)
    assert "".join(got) == digits
