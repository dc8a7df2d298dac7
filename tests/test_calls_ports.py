"""Out of RTP ports: a clean 503 with Retry-After, no call, no traceback (not a 500)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from softswitch.location import LocationStore
from softswitch.media.engine import MediaEngine
from softswitch.sip.ids import counter_ids
from softswitch.switch import SwitchCore

from .test_calls import Caller, finals, make_config, register, switch_net


async def test_no_free_rtp_port_gives_503_with_retry_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path)
    store = LocationStore(None)
    core = SwitchCore(config, store, ids=counter_ids("t"), secret=b"k" * 32, local_hosts=["127.0.0.1"])
    media = MediaEngine(host="127.0.0.1", ports=(43990, 43991), capacity=8)  # one RTP/RTCP pair
    media.start()
    n = switch_net(core, media, None)
    calls = n.calls
    register(n, "1002", 6002)
    try:
        caller = Caller(n)
        with caplog.at_level(logging.WARNING):
            got = caller.invite()
        (resp,) = finals(got)
        assert resp.status == 503 and resp.headers.get("Retry-After") == "5"
        assert calls.calls == {} and media.legs == {}  # the caller's leg was given back
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        media.stop()
