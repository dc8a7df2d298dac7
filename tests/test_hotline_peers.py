"""The trading hotline (route 95565 -> ivr:hotline) end to end with a SIPp caller.

SIPp (``tests/data/sipp/uac_ivr.xml``) calls as 1001 with digest auth and plays a pcap: a steady
500 Hz tone (so the caller's recording channel is not silent by itself) with RFC 4733 digits
keyed 200 ms apart. The switch runs the SimBroker (seeded with the demo accounts) and records
calls with ``pause_during_pin``. Checks: the order row in ``broker.sqlite``, the ``ivr <call_id>
prompts:`` log line, and the recording's PIN pause (sidecar JSON + zeros in the WAV's left channel).
"""

from __future__ import annotations

import json
import re
import sqlite3
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from softswitch.codecs.g711 import ulaw_encode
from softswitch.codecs.telephone_event import TelephoneEvent, digit_event, encode_event
from tests.peers import SippProcess, Switch, free_port_range, require_tools
from tests.rtp_pcap import write_pcap

pytestmark = pytest.mark.peer

SCENARIO = Path(__file__).parent / "data" / "sipp" / "uac_ivr.xml"
USERS = [("1001", "pw1001")]
ACCOUNT, PIN = "10000001", "123456"
PRICE_KEYS, PRICE_FEN = "39*82", 3982  # 600036's prev close is 39.82; the band is +-10 %
FRAME = 160  # 20 ms of 8 kHz audio
TE_PT = 101

HOTLINE_TOML = """
[[routes]]
match = "95565"
to = "ivr:hotline"

[recording]
enabled = true
format = "wav"
path = "recordings/{date}/{call_id}.{ext}"
pause_during_pin = true

[trading]
backend = "sim"

[ivr.hotline]
prompt = "welcome_main"
timeout_s = 5
retries = 3
[ivr.hotline.keys]
"1" = "flow:quote"
"2" = "flow:balance"
"3" = "flow:order"
"4" = "flow:positions"
"5" = "flow:cancel"
"9" = "menu:hotline"
"""


def dtmf_pcap(path: Path, keys: str, *, lead_s: float = 1.0, gap_s: float = 0.2, total_s: float) -> float:
    """An RTP pcap: a 500 Hz tone, with ``keys`` as 100 ms RFC 4733 events ``gap_s`` apart.

    Returns the time (from the pcap start) the last key ends.
    """
    n_frames = int(total_s / 0.02)
    tone = (3000 * np.sin(2 * np.pi * 500 * np.arange(n_frames * FRAME) / 8000)).astype(np.int16)
    codes = ulaw_encode(tone)
    starts: dict[int, str] = {}
    frame = int(lead_s / 0.02)
    for key in keys:
        starts[frame] = key
        frame += 5 + int(gap_s / 0.02)
    last_end = (frame - int(gap_s / 0.02)) * 0.02
    assert last_end < total_s - 1, "pcap too short for the keys"
    packets: list[tuple[float, bytes]] = []
    t0, seq, ssrc = 1_700_000_000.0, 1000, 0x5EED
    header = "!BBHII"
    i = 0
    while i < n_frames:
        if i in starts:
            event, ts = digit_event(starts[i]), i * FRAME
            for k in range(1, 6):
                body = encode_event(TelephoneEvent(event, k == 5, 10, FRAME * k))
                for _ in range(3 if k == 5 else 1):
                    marker = 0x80 if k == 1 else 0
                    packets.append(
                        (
                            t0 + (i + k - 1) * 0.02,
                            struct.pack(header, 0x80, marker | TE_PT, seq, ts, ssrc) + body,
                        )
                    )
                    seq = (seq + 1) & 0xFFFF
            i += 5
            continue
        payload = codes[i * FRAME : (i + 1) * FRAME].tobytes()
        packets.append((t0 + i * 0.02, struct.pack(header, 0x80, 0, seq, i * FRAME, ssrc) + payload))
        seq = (seq + 1) & 0xFFFF
        i += 1
    write_pcap(path, packets)
    return last_end


@pytest.fixture
def hotline(tmp_path: Path) -> Iterator[Switch]:
    require_tools("sipp")
    sw = Switch(tmp_path / "switch", USERS, rtp_ports=free_port_range(100), extra_toml=HOTLINE_TOML)
    sw.cli("broker", "seed")
    sw.start()
    try:
        yield sw
    finally:
        sw.stop()


def call_hotline(sw: Switch, out: Path, keys: str, *, total_s: float) -> SippProcess:
    """Call 95565 as 1001 playing ``keys``; hang up when the pcap is over (plus 1 s)."""
    dtmf_pcap(out.parent / f"{out.name}.pcap", keys, total_s=total_s)
    sipp = SippProcess(
        SCENARIO, out, target=sw.target, users=USERS, service="95565",
        pcap=out.parent / f"{out.name}.pcap", duration_ms=int((total_s + 1) * 1000), timeout=total_s + 20,
    )  # fmt: skip
    res = sipp.start().wait()
    assert res.rc == 0 and not res.timed_out, sipp.describe() + "\nswitch log:\n" + sw.log()[-4000:]
    return sipp


def prompt_line(sw: Switch, timeout: float = 10.0) -> tuple[str, list[str]]:
    """(call id, prompts) of the call's ``ivr <call_id> prompts: ...`` log line."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(r"ivr (\S+) prompts: (.*)", sw.log())
        if found or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    assert len(found) == 1, f"expected one prompts line:\n{sw.log()[-4000:]}"
    call_id, prompts = found[0]
    return call_id, prompts.strip().split(",")


def test_order_by_phone_places_the_order_and_pauses_the_recording_for_the_pin(
    hotline: Switch, tmp_path: Path
) -> None:
    keys = f"3{ACCOUNT}#{PIN}#1600036#{PRICE_KEYS}#200#1"
    call_hotline(hotline, tmp_path / "sipp", keys, total_s=len(keys) * 0.3 + 6)
    assert not hotline.tracebacks(), hotline.tracebacks()

    with sqlite3.connect(hotline.data_dir / "broker.sqlite") as db:
        rows = db.execute("SELECT account, side, code, price_fen, qty FROM orders").fetchall()
    assert rows == [(ACCOUNT, "buy", "600036", PRICE_FEN, 200)], hotline.log()[-4000:]

    call_id, prompts = prompt_line(hotline)
    assert "login_ok" in prompts and "order_placed" in prompts, prompts
    assert prompts.index("login_ok") < prompts.index("order_placed")

    sidecars = list((hotline.data_dir / "recordings").glob("*/*.json"))
    deadline = time.monotonic() + 10
    while not sidecars and time.monotonic() < deadline:
        time.sleep(0.2)
        sidecars = list((hotline.data_dir / "recordings").glob("*/*.json"))
    assert len(sidecars) == 1, sidecars
    meta = json.loads(sidecars[0].read_text())
    assert meta["call_id"] == call_id
    pauses = [(s, e) for s, e in meta["pauses"] if e is not None]
    assert len(pauses) == 1, meta
    start, end = pauses[0]
    # the 7 PIN keys (123456#) come 300 ms apart, so the pause lasts about 2 s
    assert 1.0 < end - start < 5.0, meta

    wav = Path(meta["recording"])
    audio, rate = sf.read(wav, dtype="int16", always_2d=True)
    left = audio[:, 0]
    margin = int(0.04 * rate)
    paused = left[int(start * rate) + margin : int(end * rate) - margin]
    assert len(paused) > rate // 2
    assert not paused.any(), f"{np.count_nonzero(paused)} non-zero samples while paused"
    # the caller's tone is recorded outside the pause (so the zeros above mean something)
    before = left[: int(start * rate)]
    assert np.count_nonzero(before) > rate // 2


def test_three_wrong_pins_lock_the_login(hotline: Switch, tmp_path: Path) -> None:
    # the login asks for the account again after each wrong PIN
    keys = "2" + f"{ACCOUNT}#000000#" * 3
    call_hotline(hotline, tmp_path / "sipp", keys, total_s=len(keys) * 0.3 + 4)
    assert not hotline.tracebacks(), hotline.tracebacks()

    _, prompts = prompt_line(hotline)
    assert "login_locked" in prompts, prompts
    assert prompts.count("login_failed") == 2, prompts
    assert "login_ok" not in prompts, prompts
    assert not [p for p in prompts if p.startswith("balance_")], prompts
