"""The media engine in worker processes (RemoteMediaEngine) on real sockets: same behaviour as in-process."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import soundfile as sf

from softswitch.calls import B2BUA
from softswitch.codecs.g711 import alaw_decode, ulaw_decode
from softswitch.codecs.telephone_event import decode_event
from softswitch.location import LocationStore
from softswitch.media.dtmf import Rfc4733Receiver
from softswitch.media.engine import DigitEvent, MediaEngine, PlaybackDone, RtpTimeout
from softswitch.media.leg import MediaError
from softswitch.media.prompts import PromptLibrary
from softswitch.media.remote import RemoteLeg, WorkerDied
from softswitch.media.workers import RemoteMediaEngine, split_ports
from softswitch.sip.ids import counter_ids
from softswitch.switch import SwitchCore

from .test_calls import A, B, Caller, Net, make_config, register, ring_and_answer
from .test_media_engine import HEADER, Peer, correlation, tone

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    lib = PromptLibrary(ROOT / "prompts")
    lib.load(languages=("zh",))
    return lib


def make_engine(ports: tuple[int, int], workers: int = 2, **kw: Any) -> RemoteMediaEngine:
    return RemoteMediaEngine(workers=workers, host="127.0.0.1", ports=ports, prompts_root=ROOT / "prompts",
                             languages=("zh",), capacity=64, pool=4, **kw)  # fmt: skip


@pytest.fixture
async def engine() -> AsyncIterator[RemoteMediaEngine]:
    eng = make_engine((45000, 45999))
    eng.start()
    await eng.wait_ready()
    yield eng
    eng.stop()


def remote(leg: object) -> RemoteLeg:
    assert isinstance(leg, RemoteLeg)
    return leg


def test_split_ports_gives_whole_pairs() -> None:
    assert split_ports(20000, 39999, 2) == [(20000, 29999), (30000, 39999)]
    assert split_ports(20001, 20010, 2) == [(20002, 20005), (20006, 20009)]
    with pytest.raises(ValueError):
        split_ports(20000, 20003, 3)


async def test_play_sends_paced_prompt_audio(engine: RemoteMediaEngine, library: PromptLibrary) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    done = leg.play(["digit_1", "digit_2"], barge_in=False)
    assert await asyncio.wait_for(done, 5) is True
    await asyncio.sleep(0.1)
    packets = phone.drain()
    headers = [HEADER.unpack_from(p) for p in packets]
    assert {h[1] & 0x7F for h in headers} == {0}
    assert all((b[2] - a[2]) & 0xFFFF == 1 for a, b in itertools.pairwise(headers))
    assert all((b[3] - a[3]) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(headers))
    assert {h[4] for h in headers} == {remote(leg).ssrc}
    audio = ulaw_decode(np.frombuffer(b"".join(p[12:] for p in packets), np.uint8))
    for name in ("digit_1", "digit_2"):
        assert correlation(audio, library.pcm("zh", name)) > 0.95
    # PCM arrays travel too, and unknown prompts fail the future like the engine's MediaError
    assert await asyncio.wait_for(leg.play([tone((440,), 0.1)], barge_in=False), 3) is True
    with pytest.raises(MediaError, match="unknown prompt"):
        await asyncio.wait_for(leg.play(["no_such_prompt"]), 3)
    engine.release(leg)
    phone.close()


async def test_rfc4733_digit_barges_in_and_is_collected(engine: RemoteMediaEngine) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", telephone_event_pt=101, remote=phone.addr)
    events: list[object] = []
    leg.on_event = events.append
    playing = leg.play(["main_menu"])
    await asyncio.sleep(0.1)
    await phone.digit(leg, 5)
    assert await asyncio.wait_for(playing, 1) is False  # barge-in
    collecting = leg.collect_digits(4, terminator="#", first_timeout=2, inter_digit_timeout=2)
    for event in (1, 2, 11):  # 1 2 #
        await phone.digit(leg, event)
    assert await asyncio.wait_for(collecting, 2) == "512"
    await asyncio.sleep(0.05)
    assert [e.digit for e in events if isinstance(e, DigitEvent)] == ["5", "1", "2", "#"]
    assert all(e.leg is leg for e in events if isinstance(e, DigitEvent))
    assert any(isinstance(e, PlaybackDone) and not e.completed for e in events)
    assert leg.digits_received == 4
    assert await asyncio.wait_for(leg.collect_digits(3, first_timeout=0.2), 2) == ""
    leg.feed_digit("7")  # SIP INFO
    assert await asyncio.wait_for(leg.collect_digits(1, first_timeout=1), 2) == "7"
    engine.release(leg)
    phone.close()


async def test_send_dtmf_as_rfc4733(engine: RemoteMediaEngine) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", telephone_event_pt=101, remote=phone.addr)
    await asyncio.wait_for(leg.send_dtmf("1#"), 3)
    await asyncio.sleep(0.1)
    rx = Rfc4733Receiver()
    digits = []
    for p in phone.drain():
        _, b1, _, ts, _ = HEADER.unpack_from(p)
        if b1 & 0x7F == 101:
            d = rx.feed(ts, decode_event(p[12:16]), bool(b1 & 0x80))
            if d:
                digits.append(d)
    assert digits == ["1", "#"]
    leg.configure(telephone_event_pt=None)
    with pytest.raises(MediaError):
        leg.send_dtmf("1")
    engine.release(leg)
    phone.close()


async def test_bridge_relays_and_transcodes_on_the_same_worker(engine: RemoteMediaEngine) -> None:
    alice, bob = Peer(), Peer()
    a = engine.create_leg()
    b = engine.create_leg(near=a)
    assert remote(a).worker == remote(b).worker
    other = engine.create_leg()  # least loaded: the other worker
    assert remote(other).worker != remote(a).worker
    with pytest.raises(MediaError):
        engine.bridge(a, other)
    a.configure(codec="pcmu", remote=alice.addr)
    b.configure(codec="pcma", payload_type=8, remote=bob.addr)
    engine.bridge(a, b)
    assert a.peer is b and b.peer is a
    await asyncio.sleep(0.05)
    bob.drain()
    bob.packets.clear()
    speech = tone((440, 660), 0.6)
    await alice.stream(a, speech)
    await asyncio.sleep(0.1)
    packets = [p for p in bob.drain() if HEADER.unpack_from(p)[1] & 0x7F == 8]
    assert len(packets) >= 25
    assert {HEADER.unpack_from(p)[4] for p in packets} == {remote(b).ssrc}
    audio = alaw_decode(np.frombuffer(b"".join(p[12:] for p in packets), np.uint8))
    assert correlation(audio, speech) > 0.95
    engine.unbridge(a)
    assert a.peer is None and b.peer is None
    for leg in (a, b, other):
        engine.release(leg)
    assert engine.legs == {}
    alice.close()
    bob.close()


async def test_recording_round_trip_with_pause(
    engine: RemoteMediaEngine, library: PromptLibrary, tmp_path: Path
) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    rec = leg.record(tmp_path / "call.wav")
    leg.play(["digit_8"], barge_in=False)
    caller = tone((300, 500), 1.0, 4000)
    await phone.stream(leg, caller)
    leg.pause_recording()
    await phone.stream(leg, tone((300, 500), 0.4, 4000))
    leg.resume_recording()
    await asyncio.sleep(0.2)
    leg.stop_recording()
    (start, end), *_ = rec.pauses  # known at once, as the call layer reads them right after stopping
    assert end is not None and end - start >= 0.3
    assert await asyncio.to_thread(rec.wait, 10) and rec.error is None
    (start, end), *_ = rec.pauses  # the worker's figures
    assert end is not None and 0.3 <= end - start < 0.6
    data, rate = sf.read(tmp_path / "call.wav", dtype="int16")
    assert rate == 8000 and data.shape[1] == 2
    left, right = data[:, 0], data[:, 1]
    assert abs(len(left) / 8000 - rec.duration) < 0.05
    assert correlation(left, caller[1600:6400]) > 0.9
    assert correlation(right, library.pcm("zh", "digit_8")) > 0.9
    paused = left[int(start * 8000) + 80 : int(end * 8000) - 80]
    assert len(paused) > 1000 and not paused.any()
    engine.release(leg)
    phone.close()


async def test_app_recording_closed_by_release(engine: RemoteMediaEngine, tmp_path: Path) -> None:
    phone = Peer()
    leg = engine.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    rec = leg.record(tmp_path / "msg.wav", app=True)
    await phone.stream(leg, tone((700,), 0.5, 4000))
    engine.release(leg)  # the caller hung up mid-message
    assert rec.closed
    assert await asyncio.to_thread(rec.wait, 10)
    data, _ = sf.read(tmp_path / "msg.wav", dtype="int16")
    assert len(data) >= 3000


async def test_rtp_timeout_event() -> None:
    eng = make_engine((45000, 45099), workers=1, rtp_timeout_s=30.0)
    eng.start()
    await eng.wait_ready()
    eng.rtp_timeout_s = 0.5  # passed on to the workers
    phone = Peer()
    leg = eng.create_leg()
    leg.configure(codec="pcmu", remote=phone.addr)
    events: list[object] = []
    leg.on_event = events.append
    await asyncio.sleep(1.6)
    timeouts = [e for e in events if isinstance(e, RtpTimeout)]
    assert len(timeouts) == 1 and timeouts[0].silent_for >= 0.5 and timeouts[0].leg is leg
    assert not isinstance(timeouts[0], WorkerDied)
    eng.stop()
    phone.close()


async def test_release_frees_ports(engine: RemoteMediaEngine) -> None:
    legs = [engine.create_leg() for _ in range(6)]
    ports = [leg.port for leg in legs]
    assert all(p % 2 == 0 for p in ports) and len(set(ports)) == 6
    assert sorted({remote(leg).worker for leg in legs}) == [0, 1]  # spread over both workers
    for leg in legs:
        engine.release(leg)
    engine.release(legs[0])  # twice is harmless
    assert engine.legs == {}
    await asyncio.sleep(0.2)
    for port in ports:  # the workers closed the sockets
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", port))
        s.close()
    await asyncio.sleep(0.1)
    assert all(len(w.ready) == 4 for w in engine.workers)  # made again in advance


async def test_killed_worker_ends_its_legs_only(
    engine: RemoteMediaEngine, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    phone_a, phone_b = Peer(), Peer()
    a = engine.create_leg()
    a2 = engine.create_leg(near=a)
    b = engine.create_leg()
    assert remote(a).worker != remote(b).worker
    a.configure(codec="pcmu", telephone_event_pt=101, remote=phone_a.addr)
    b.configure(codec="pcmu", remote=phone_b.addr)
    events: dict[str, list[object]] = {"a": [], "a2": [], "b": []}
    a.on_event, a2.on_event, b.on_event = events["a"].append, events["a2"].append, events["b"].append
    collecting = a.collect_digits(4, first_timeout=30)
    playing_b = b.play(["main_menu"], barge_in=False)
    await asyncio.sleep(0.2)
    victim = engine.workers[remote(a).worker]
    assert victim.pid is not None
    with caplog.at_level(logging.ERROR, logger="softswitch.media.workers"):
        os.kill(victim.pid, signal.SIGKILL)
        await asyncio.sleep(0.3)
    assert collecting.cancelled()
    assert [type(e) for e in events["a"]] == [WorkerDied] and [type(e) for e in events["a2"]] == [WorkerDied]
    assert cast(WorkerDied, events["a"][0]).leg is a
    assert any("died (killed by signal 9)" in r.getMessage() for r in caplog.records)
    # the other worker's call goes on
    phone_b.drain()
    phone_b.packets.clear()
    await asyncio.sleep(0.3)
    assert len(phone_b.drain()) >= 10 and not playing_b.done() and events["b"] == []
    # operations on the dead legs do not raise; the event comes again for whoever cares now
    assert a.play(["digit_1"]).cancelled()
    engine.bridge(a, a2)
    await asyncio.sleep(0)
    assert len(events["a"]) >= 2
    engine.release(a)
    engine.release(a2)
    # new legs go to the live worker until the dead one is back
    c = engine.create_leg()
    assert remote(c).worker == remote(b).worker
    with pytest.raises(MediaError):
        engine.create_leg(near=a)
    await asyncio.sleep(1.0)
    await asyncio.wait_for(victim.got_pool.wait(), 5)  # restarted
    assert victim.alive and victim.deaths == 1 and len(victim.ready) == 4
    d = engine.create_leg(near=c)
    assert remote(d).worker == remote(c).worker
    engine.release(d)
    engine.release(c)
    engine.release(b)
    assert errors == []
    phone_a.close()
    phone_b.close()


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    config = make_config(tmp_path)
    store = LocationStore(None)
    core = SwitchCore(config, store, ids=counter_ids("t"), secret=b"k" * 32, local_hosts=["127.0.0.1"])
    pool = RemoteMediaEngine(workers=2, host="127.0.0.1", ports=config.rtp_ports, capacity=32, recording=False,
                             pool=4)  # fmt: skip
    pool.start()
    await pool.wait_ready()
    holder: list[Net] = []
    calls = B2BUA(config, core.stack, core.ids, store, core.auth, cast(MediaEngine, pool), None,
                  local={"udp": ("127.0.0.1", 5060)}, clock=lambda: (holder[0].now, holder[0].wall))  # fmt: skip
    core.enable_calls(calls)
    n = Net(core, calls)
    calls.flush = n.flush
    holder.append(n)
    register(n, "1002", 6002)
    yield n
    pool.stop()


async def test_killed_worker_hangs_up_its_calls_only(net: Net) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    one, two = Caller(net, call_id="one@a"), Caller(net, call_id="two@a")
    ring_and_answer(net, one)
    ring_and_answer(net, two)
    call1, call2 = net.calls.calls["one@a"], net.calls.calls["two@a"]
    w1, w2 = remote(call1.a_media).worker, remote(call2.a_media).worker
    assert remote(call1.b_media).worker == w1 != w2 == remote(call2.b_media).worker
    pool = cast(RemoteMediaEngine, net.calls.media)
    pid = pool.workers[w1].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.3)
    byes_a = [r.call_id for r in net.requests(A, "BYE")]
    byes_b = [r.call_id for r in net.requests(B, "BYE")]
    assert byes_a == ["one@a"] and byes_b == [call1.b_call_id]
    assert list(net.calls.calls) == ["two@a"] and call2.a_media.peer is call2.b_media
    assert {remote(leg).worker for leg in pool.legs.values()} == {w2}
    # a new call while the worker is down goes to the live one
    three = Caller(net, call_id="three@a")
    ring_and_answer(net, three)
    assert remote(net.calls.calls["three@a"].a_media).worker == w2
    for caller in (two, three):
        net.deliver(caller.request("BYE"), A)
    assert net.calls.calls == {} and pool.legs == {}
    assert errors == []


async def test_shared_rtp_mode_in_the_workers(library: PromptLibrary) -> None:
    eng = make_engine((45100, 45199), engine_options={"rtp_mode": "shared"})
    eng.start()
    await eng.wait_ready()
    phone = Peer()
    a = eng.create_leg()
    b = eng.create_leg()
    assert remote(a).worker != remote(b).worker and a.port != b.port  # one shared port per worker
    a.configure(codec="pcmu", telephone_event_pt=101, remote=phone.addr)
    assert await asyncio.wait_for(a.play(["digit_3"], barge_in=False), 5) is True
    await asyncio.sleep(0.1)
    audio = ulaw_decode(np.frombuffer(b"".join(p[12:] for p in phone.drain()), np.uint8))
    assert correlation(audio, library.pcm("zh", "digit_3")) > 0.95
    collecting = a.collect_digits(1, first_timeout=2)
    await phone.digit(a, 9)
    assert await asyncio.wait_for(collecting, 2) == "9"
    eng.stop()
    phone.close()


async def test_realtime_priority_reaches_the_workers() -> None:
    """[media] realtime_priority: each worker runs SCHED_RR (as root; else it says why and goes on)."""
    eng = make_engine((46000, 46099), workers=1, realtime_priority=7)
    eng.start()
    try:
        await eng.wait_ready()
        pid = eng.workers[0].pid
        assert pid is not None
        if os.geteuid() == 0:
            assert os.sched_getscheduler(pid) == os.SCHED_RR
            assert os.sched_getparam(pid).sched_priority == 7
        else:
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    finally:
        eng.stop()


def test_set_realtime_in_a_process_of_its_own() -> None:
    code = (
        "import json, os; from softswitch.runtime import set_realtime; "
        "print(json.dumps([set_realtime(0), set_realtime(3), os.sched_getscheduler(0) == os.SCHED_RR]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    off, on, rr = json.loads(run.stdout)
    assert off is None  # 0: nothing to do
    if os.geteuid() == 0:
        assert (on, rr) == (None, True)
    else:
        assert isinstance(on, str) and rr is False  # the reason it could not, not an exception
