"""An agent with a real phone: baresip registers as agent 2001's account, dials ``*70`` and answers a queue call.

baresip (``tests/baresip.py``: headless, a WAV of silence as microphone, the sndfile filter dumping
what it heard) auto-answers incoming calls (``answermode=auto``). It dials ``*70``: the switch's
feature app logs the agent in and says so (the ``agent_logged_in`` prompt is found in what baresip
heard, by cross-correlation with the prompt's WAV), then hangs up. A SIPp caller then calls the
queue; the ACD rings 2001's phone, baresip answers, and the caller is bridged to it: the queue log
has CONNECT with agent 2001 and the CDR of the caller's call is answered.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.baresip import Baresip
from tests.peers import LOOPBACK, require_tools
from tests.test_acd_peers import QUEUE, AcdHarness, callers_by_call, connects, fmt
from tests.test_hotline_baresip import RATE, heard_problems, prompt_pcm, read_mono

pytestmark = pytest.mark.peer


@pytest.fixture
def acd(tmp_path: Path) -> Iterator[AcdHarness]:
    require_tools("baresip", "sipp")
    h = AcdHarness(tmp_path)
    try:
        yield h.start()
    finally:
        h.close()


def test_baresip_agent_logs_in_with_star70_and_answers_a_queue_call(acd: AcdHarness, tmp_path: Path) -> None:
    mic = tmp_path / "silence.wav"
    with wave.open(str(mic), "wb") as w:  # baresip 1.0 hangs up when its WAV microphone ends
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(2 * RATE * 60))
    ua = Baresip(
        tmp_path / "phone", LOOPBACK, acd.sw.port, "2001", "pw2001", answer=True, mic_wav=mic, timeout=50
    )
    ua.start()
    try:
        ok, detail = ua.wait_registered(timeout=10)
        assert ok, f"baresip did not register: {detail}\n{ua.log()[-2000:]}"
        assert acd.agents_status()["agents"]["2001"]["state"] == "logged_out"

        # *70: the switch answers, says "logged in" and hangs up
        start = ua.dial("*70")
        assert ua.wait_event({"CALL_ESTABLISHED"}, timeout=5, start=start), ua.log()[-2000:]
        closed = ua.wait_event({"CALL_CLOSED"}, timeout=10, start=start)
        assert closed is not None, f"the switch did not hang up the *70 call\n{ua.log()[-2000:]}"
        login = acd.wait_event("AGENTLOGIN", agent="2001")
        assert login[0].data == ("2001",), fmt(login)
        status = acd.agents_status()["agents"]["2001"]
        assert status["state"] == "available" and status["registered"] is True, status
        dumps = ua.recordings()["received"]
        assert len(dumps) == 1, dumps
        heard = read_mono(dumps[0])
        assert heard_problems(heard, prompt_pcm("zh", ["agent_logged_in"])) == []

        # a caller to the queue: 2001's phone (baresip) rings and answers by itself
        mark = len(ua.events)
        caller = acd.caller("1001", QUEUE, 4.0)
        answered = ua.wait_event({"CALL_ESTABLISHED"}, timeout=5, start=mark)
        assert answered is not None, f"{[e.get('type') for e in ua.events]}\n{ua.log()[-2000:]}"
        assert answered.get("direction") == "incoming" and "1001@" in answered.get("peeruri", ""), answered
        assert acd.finish(caller).successful == 1, caller.describe()
        assert ua.wait_event({"CALL_CLOSED"}, timeout=5, start=mark), "the switch did not hang up the agent"
    finally:
        ua.quit()

    entries = acd.wait_for(lambda es: any(e.event.startswith("COMPLETE") for e in es), "the call completed")
    assert connects(entries) == [("1001", "2001")], fmt(entries)
    assert not [e for e in entries if e.event == "RINGNOANSWER"], fmt(entries)
    call_id = next(c for c, user in callers_by_call(entries).items() if user == "1001")
    rows = {r["call_id"]: r for r in acd.sw.wait_cdr(2)}
    assert call_id in rows, rows
    row = rows[call_id]
    assert row["disposition"] == "answered" and row["hangup_side"] == "caller", row
    assert not acd.sw.tracebacks(), acd.sw.tracebacks()
