"""The trading hotline with a real phone: baresip calls 95565, keys RFC 4733 digits, and what it heard is checked.

baresip (``tests/baresip.py``: headless, aufile microphone of silence, the sndfile filter dumping the
decoded received audio) registers as 1001 and calls the hotline of a switch running the SimBroker
(seeded with the demo accounts). It keys digits with ctrl_tcp's ``sndcode`` command (one digit per
command: baresip sends it as an RFC 4733 telephone-event, start then end): a quote for 600036, then an
order (the login runs first: account 10000001, PIN 123456), buy 200 at 39.82, confirmed.

Checks: the order row in ``broker.sqlite``; the ``ivr <call_id> prompts: ...`` log line; and that the
audio baresip received is exactly that prompt sequence: every prompt is found, in order, by normalised
cross-correlation with its WAV from ``prompts/zh`` (G.711 decoded, so ~1.0), heard whole or up to the
digit that barged in, and no other sound was heard (:func:`heard_problems`). The keys are timed from
the prompts' known lengths so that each instruction prompt is heard for about a second before the
caller barges in, and every read-out (quote, order read-back, order number) is heard whole.

The matcher has unit tests of its own with negative controls (wrong order, a prompt missing from the
log or from the audio, a different digit): a wrong sequence must fail.
"""

from __future__ import annotations

import re
import sqlite3
import time
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from softswitch.codecs.g711 import ulaw_decode, ulaw_encode
from softswitch.media.prompts import read_wav
from softswitch.media.say import say_change, say_digits, say_order_readback, say_price
from softswitch.trading.instruments import INSTRUMENTS, PriceSimulator
from tests.baresip import Baresip
from tests.peers import LOOPBACK, REPO, Switch, free_port_range, require_tools
from tests.test_hotline_peers import ACCOUNT, HOTLINE_TOML, PIN, PRICE_FEN, PRICE_KEYS, USERS

RATE = 8000
PROMPTS = REPO / "prompts"
BLOCK = 800  # 100 ms: the unit of the heard/unheard decision
FRAME = 160  # 20 ms: where a prompt was cut, within a block
SOUND = 1e4  # mean square of a block that is sound, not silence (about -35 dBFS)
MIN_SCORE = 0.9  # G.711 round trip of a prompt scores ~0.999
MIN_HEARD_S = 0.3  # a prompt cut by a digit must still have been heard this long
HEAD_S = 0.5  # the part of a prompt used to find where it starts

Pcm = npt.NDArray[np.int16]


# ---------------------------------------------------------------- the matcher


@dataclass(frozen=True, slots=True)
class Heard:
    """Where prompt ``name`` was found in the received audio (samples)."""

    name: str
    start: int
    length: int  # the whole prompt, or up to where it stopped (barge-in, hangup)
    score: float  # normalised cross-correlation of the heard part with the prompt's beginning


def _cos(a: Pcm, b: Pcm) -> float:
    x, y = a.astype(np.float64), b.astype(np.float64)
    d = float(np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return float(np.dot(x, y)) / d if d else 0.0


def ncc_curve(x: Pcm, t: Pcm) -> npt.NDArray[np.float64]:
    """Normalised cross-correlation of template ``t`` at every offset of ``x`` (``len(x) - len(t) + 1`` values)."""
    xf, tf = x.astype(np.float64), t.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(xf.size + tf.size)))
    c = np.fft.irfft(np.fft.rfft(xf, n) * np.conj(np.fft.rfft(tf, n)), n)[: xf.size - tf.size + 1]
    energy = np.concatenate([[0.0], np.cumsum(xf * xf)])
    local = energy[tf.size :] - energy[: xf.size - tf.size + 1]
    result: npt.NDArray[np.float64] = c / np.sqrt(np.maximum(local, 1e-9) * max(float(np.dot(tf, tf)), 1e-9))
    return result


def _is_sound(block: Pcm) -> bool:
    return block.size > 0 and float(np.mean(block.astype(np.float64) ** 2)) > SOUND


def _matches(heard: Pcm, start: int, prompt: Pcm, offset: int, size: int) -> bool:
    """Whether ``heard`` still plays ``prompt`` over [offset, offset + size) of the prompt: both
    silent, or both sound with similar waveforms (a cut, or another sound in a pause, is a mismatch)."""
    tb = prompt[offset : offset + size]
    hb = heard[start + offset : start + offset + tb.size]
    t_sound, h_sound = _is_sound(tb), _is_sound(hb)
    return t_sound == h_sound and (not t_sound or _cos(tb, hb) >= 0.6)


def _heard_length(heard: Pcm, start: int, prompt: Pcm) -> int:
    """How much of ``prompt`` was heard from ``start``: 100 ms blocks, then 20 ms frames in the first
    block that does not match."""
    end = min(prompt.size, heard.size - start)
    for b in range(0, end, BLOCK):
        if not _matches(heard, start, prompt, b, min(BLOCK, end - b)):
            for f in range(b, min(b + BLOCK, end), FRAME):
                if not _matches(heard, start, prompt, f, min(FRAME, end - f)):
                    return f
    return end


def locate_prompts(heard: Pcm, prompts: Sequence[tuple[str, Pcm]], *, max_gap_s: float = 20.0) -> list[Heard]:
    """Find each prompt in turn in ``heard``, each after the previous one (within ``max_gap_s``).

    A prompt's start is the first good match (else the best) of its first ``HEAD_S`` seconds; how
    long it was heard is found block by block; its score is the cross-correlation of that heard part
    with the prompt.
    """
    found: list[Heard] = []
    cursor = 0
    for name, pcm in prompts:
        head = pcm[: min(pcm.size, int(HEAD_S * RATE))]
        window = heard[cursor : cursor + int(max_gap_s * RATE) + head.size]
        if head.size == 0 or window.size < head.size:
            found.append(Heard(name, cursor, 0, 0.0))
            continue
        curve = ncc_curve(window, head)
        # the first good match, not the best: many prompts begin alike ("please enter ...")
        good = np.flatnonzero(curve >= MIN_SCORE)
        if good.size:
            first = int(good[0])
            start = cursor + first + int(np.argmax(curve[first : first + 160]))
        else:
            start = cursor + int(np.argmax(curve))
        length = _heard_length(heard, start, pcm)
        score = _cos(heard[start : start + length], pcm[:length]) if length else 0.0
        found.append(Heard(name, start, length, score))
        # the next prompt may start inside this one's last block (it was cut mid-block)
        cursor = start + max(length - BLOCK, 1)
    return found


def heard_problems(heard: Pcm, prompts: Sequence[tuple[str, Pcm]]) -> list[str]:
    """Why ``heard`` is not exactly ``prompts`` in that order ([] when it is).

    Every prompt must be found with a score of at least MIN_SCORE, heard whole or for MIN_HEARD_S
    at least, after the previous one; and every 100 ms of sound in ``heard`` must lie in a found prompt.
    """
    found = locate_prompts(heard, prompts)
    problems = []
    for i, (h, (_, pcm)) in enumerate(zip(found, prompts, strict=True)):
        where = f"#{i} {h.name} at {h.start / RATE:.2f} s"
        if h.score < MIN_SCORE:
            problems.append(f"{where}: not found (score {h.score:.3f}, {h.length / RATE:.2f} s)")
        elif h.length < min(pcm.size, int(MIN_HEARD_S * RATE)):
            problems.append(f"{where}: heard only {h.length / RATE:.2f} s of {pcm.size / RATE:.2f} s")
        if i and h.start < found[i - 1].start + min(found[i - 1].length, 1):
            problems.append(f"{where}: not after #{i - 1}")
    covered = np.zeros(heard.size, dtype=bool)
    for h in found:
        if h.score >= MIN_SCORE:
            covered[h.start : h.start + h.length] = True
    stray = []
    for b in range(0, heard.size - FRAME + 1, BLOCK):
        rest = heard[b : b + BLOCK][~covered[b : b + BLOCK]]
        if rest.size >= FRAME // 2 and _is_sound(rest):
            stray.append(b)
    if stray:
        spans = ", ".join(f"{b / RATE:.1f} s" for b in stray[:8])
        problems.append(f"{len(stray)} blocks of sound outside every logged prompt, at {spans}")
    return problems


def prompt_pcm(lang: str, names: Sequence[str]) -> list[tuple[str, Pcm]]:
    return [(n, read_wav(PROMPTS / lang / f"{n}.wav")) for n in names]


def seconds(lang: str, names: Sequence[str]) -> float:
    return sum(read_wav(PROMPTS / lang / f"{n}.wav").size for n in names) / RATE


# ---------------------------------------------------------------- matcher unit tests (no peers)


def _g711(pcm: Pcm) -> Pcm:
    out: Pcm = ulaw_decode(ulaw_encode(pcm))
    return out


def _line(parts: Sequence[tuple[str, Pcm] | float], noise: int = 0) -> Pcm:
    """Prompts (through G.711) and pauses (seconds of silence, plus a little noise) back to back."""
    rng = np.random.default_rng(7)
    chunks = []
    for p in parts:
        if isinstance(p, float):
            chunks.append(
                (rng.normal(0, noise, int(p * RATE)) if noise else np.zeros(int(p * RATE))).astype(np.int16)
            )
        else:
            chunks.append(_g711(p[1]))
    return np.concatenate(chunks).astype(np.int16)


@pytest.fixture(scope="module")
def zh() -> dict[str, Pcm]:
    names = ["welcome_main", "quote_enter_code", "quote_name", "stock_600036", "digit_6", "digit_9",
             "word_dian", "quote_menu", "enter_account"]  # fmt: skip
    return dict(prompt_pcm("zh", names))


def _cut(item: tuple[str, Pcm], s: float) -> tuple[str, Pcm]:
    return item[0], item[1][: int(s * RATE)]


def test_matcher_finds_the_sequence_with_cuts_and_gaps(zh: dict[str, Pcm]) -> None:
    p = {n: (n, pcm) for n, pcm in zh.items()}
    heard = _line([0.3, _cut(p["welcome_main"], 1.4), 1.1, p["quote_name"], p["stock_600036"], p["digit_6"],
                   p["word_dian"], p["digit_6"], 0.02, p["quote_menu"], 2.0], noise=20)  # fmt: skip
    logged = ["welcome_main", "quote_name", "stock_600036", "digit_6", "word_dian", "digit_6", "quote_menu"]
    found = locate_prompts(heard, [p[n] for n in logged])
    starts = [0.3, 2.8, 2.8 + zh["quote_name"].size / RATE]  # after 0.3 s, 1.4 s heard, 1.1 s of silence
    for h, s in zip(found, starts, strict=False):
        assert abs(h.start / RATE - s) < 0.002, (h, s)
    assert found[0].length == pytest.approx(1.4 * RATE, abs=BLOCK)  # cut by a digit
    assert all(h.score > 0.99 for h in found), found
    assert heard_problems(heard, [p[n] for n in logged]) == []


@pytest.mark.parametrize(
    ("logged", "problem"),
    [
        # the log says the two prompts in the other order
        (["quote_name", "digit_9", "stock_600036", "quote_menu"], "not found"),
        # the log misses a prompt the caller heard
        (["quote_name", "stock_600036", "quote_menu"], "outside every logged prompt"),
        # the log has a prompt the caller never heard
        (["quote_name", "stock_600036", "digit_9", "enter_account", "quote_menu"], "not found"),
        # another digit than the one heard
        (["quote_name", "stock_600036", "digit_6", "quote_menu"], "not found"),
    ],
)
def test_matcher_rejects_a_wrong_sequence(zh: dict[str, Pcm], logged: list[str], problem: str) -> None:
    p = {n: (n, pcm) for n, pcm in zh.items()}
    heard = _line([0.5, p["quote_name"], p["stock_600036"], p["digit_9"], 1.0, p["quote_menu"], 0.5])
    assert (
        heard_problems(heard, [p[n] for n in ["quote_name", "stock_600036", "digit_9", "quote_menu"]]) == []
    )
    problems = heard_problems(heard, [p[n] for n in logged])
    assert any(problem in x for x in problems), problems


def test_matcher_rejects_a_prompt_heard_too_briefly(zh: dict[str, Pcm]) -> None:
    p = {n: (n, pcm) for n, pcm in zh.items()}
    heard = _line([0.5, _cut(p["enter_account"], 0.15), 1.0, p["quote_name"], 0.5])
    problems = heard_problems(heard, [p["enter_account"], p["quote_name"]])
    assert problems and ("heard only" in problems[0] or "not found" in problems[0]), problems


# ---------------------------------------------------------------- the real call


@pytest.fixture
def hotline(tmp_path: Path) -> Iterator[Switch]:
    require_tools("baresip")
    sw = Switch(tmp_path / "switch", USERS, rtp_ports=free_port_range(100), extra_toml=HOTLINE_TOML)
    sw.cli("broker", "seed")
    sw.start()
    try:
        yield sw
    finally:
        sw.stop()


def quote_readouts(code: str, lang: str, now: float) -> list[list[str]]:
    """The quote read-outs the switch may say for ``code`` within 2 s of ``now`` (its simulator's prices)."""
    sim, out = PriceSimulator(), []
    for t in np.arange(now - 2.0, now + 2.0, 0.02):
        q = sim.quote(INSTRUMENTS[code], float(t))
        names = ["quote_name", f"stock_{code}", "quote_current_price", *say_price(q.price, lang), "word_yuan",
                 *say_change(q.change_pct, lang)]  # fmt: skip
        if names not in out:
            out.append(names)
    return out


class Caller:
    """baresip in a call, keying digits timed against the prompts it is hearing."""

    KEY_GAP_S = 0.15  # between two digits of one entry
    BARGE_S = 0.9  # how long into an instruction prompt the caller starts keying

    def __init__(self, ua: Baresip, lang: str) -> None:
        self.ua, self.lang = ua, lang
        self.mark = time.monotonic()  # when the prompts now playing started (about)

    def after(self, names: Sequence[str], *, into_next: float | None = None) -> None:
        """Wait until ``names`` (played from ``mark``) are over, plus ``into_next`` s of the next prompt."""
        wait = seconds(self.lang, names) + (self.BARGE_S if into_next is None else into_next)
        time.sleep(max(0.0, self.mark + wait - time.monotonic()))

    def key(self, digits: str) -> None:
        for i, d in enumerate(digits):
            if i:
                time.sleep(self.KEY_GAP_S)
            r = self.ua.command("sndcode", d)
            assert r is not None and r.get("ok", True), f"sndcode {d}: {r}\n{self.ua.log()[-2000:]}"
        self.mark = time.monotonic()  # the switch answers the last digit with the next prompts


def read_mono(path: Path) -> Pcm:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (RATE, 2, 1), path
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").copy()


@pytest.mark.peer
def test_baresip_quote_then_order_and_the_caller_heard_every_prompt(hotline: Switch, tmp_path: Path) -> None:
    lang, code = "zh", "600036"
    mic = tmp_path / "silence.wav"
    with wave.open(str(mic), "wb") as w:  # baresip 1.0 hangs up when its WAV microphone ends
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(2 * RATE * 120))
    ua = Baresip(tmp_path / "phone", LOOPBACK, hotline.port, *USERS[0], mic_wav=mic, timeout=90)
    ua.start()
    try:
        ok, detail = ua.wait_registered(timeout=10)
        assert ok, f"baresip did not register: {detail}\n{ua.log()[-2000:]}"
        start = ua.dial("95565")
        ev = ua.wait_event({"CALL_ESTABLISHED", "CALL_CLOSED"}, 10, start)
        assert ev is not None and ev["type"] == "CALL_ESTABLISHED", f"{ev}\n{hotline.log()[-3000:]}"
        caller = Caller(ua, lang)
        caller.mark = ev["at"]
        # quote: the price the switch will read is the simulator's (waves of 20 min and more)
        caller.after([], into_next=1.5)
        caller.key("1")
        caller.after([])
        caller.key(f"{code}#")
        readouts = quote_readouts(code, lang, time.time())
        caller.after(readouts[len(readouts) // 2], into_next=1.5)
        caller.key("*")
        # order: menu key 3, login, buy, code, price, quantity, confirm
        caller.after([], into_next=1.5)
        caller.key("3")
        caller.after([])
        caller.key(f"{ACCOUNT}#")
        caller.after([])
        caller.key(f"{PIN}#")
        caller.after(["login_ok"])
        caller.key("1")
        for entry in (f"{code}#", f"{PRICE_KEYS}#", "200#"):
            caller.after([])
            caller.key(entry)
        readback = say_order_readback("buy", [f"stock_{code}"], 200, Decimal(PRICE_FEN) / 100, lang)
        caller.after(readback, into_next=1.2)
        caller.key("1")
        # order_placed, order_number_is, the number (the first order of a fresh database), the menu again
        caller.after(["order_placed", "order_number_is", *say_digits("1", lang)], into_next=1.5)
        events = len(ua.events)
        ua.hangup()
        assert ua.wait_event({"CALL_CLOSED"}, 5, events) is not None, ua.log()[-2000:]
    finally:
        ua.quit()  # closes the sndfile dumps
        ua.kill()
    assert not hotline.tracebacks(), hotline.tracebacks()

    with sqlite3.connect(hotline.data_dir / "broker.sqlite") as db:
        rows = db.execute("SELECT account, side, code, price_fen, qty FROM orders").fetchall()
    assert rows == [(ACCOUNT, "buy", code, PRICE_FEN, 200)], hotline.log()[-4000:]

    deadline = time.monotonic() + 10
    while (
        not (lines := re.findall(r"ivr (\S+) prompts: (.*)", hotline.log())) and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert len(lines) == 1, hotline.log()[-4000:]
    logged = lines[0][1].strip().split(",")
    assert "<pcm>" not in logged, logged
    # the quote as read (the simulated price moves by up to ~2 ticks a second)
    i = logged.index("quote_menu") if "quote_menu" in logged else 0
    readout = logged[2:i]
    assert readout in readouts, f"{readout} is none of the quotes around the call's time: {readouts}"
    expected = ["welcome_main", "quote_enter_code", *readout, "quote_menu", "welcome_main", "enter_account",
                "enter_pin", "login_ok", "order_buy_or_sell", "order_enter_code", "order_enter_price",
                "order_enter_quantity", *readback, "order_confirm", "order_placed", "order_number_is",
                *say_digits("1", lang), "welcome_main"]  # fmt: skip
    assert logged == expected, f"\nlogged   {logged}\nexpected {expected}"

    dumps = ua.recordings()["received"]
    assert len(dumps) == 1, dumps
    heard = read_mono(dumps[0])
    prompts = prompt_pcm(lang, logged)
    problems = heard_problems(heard, prompts)
    table = "\n".join(
        f"  {h.name:24} {h.start / RATE:6.2f} s  {h.length / RATE:5.2f} s  {h.score:.3f}"
        for h in locate_prompts(heard, prompts)
    )
    assert not problems, "\n".join(problems) + "\n" + table
