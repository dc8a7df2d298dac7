"""IVR menus against a fake CallSession: scripted digits in, prompt sequence out, no sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from softswitch.ivr import (
    BUILTIN_FLOWS,
    Action,
    IvrContext,
    make_ivr_app,
    parse_action,
    parse_menus,
)
from softswitch.ivr.menu import SYSTEM_PROMPTS
from softswitch.media.prompts import load_manifest

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = set(load_manifest(ROOT / "prompts" / "zh" / "manifest.toml").prompts)

BLOCK = object()  # in a script: collect() waits its first_timeout (the caller is silent or hangs up there)


class FakeSession:
    """The CallSession API with scripted input: each collect() takes the next script entry."""

    def __init__(
        self,
        digits: Sequence[object] = (),
        *,
        name: str = "hotline",
        language: str = "zh",
        connect_ok: bool = True,
        call_id: str = "call-1",
        caller: str = "1000",
    ) -> None:
        self.script = list(digits)
        self.name = name
        self.language = language
        self.connect_ok = connect_ok
        self.call_id = call_id
        self.caller = caller
        self.callee = "95565"
        self.answered = False
        self.ended = False
        self.prompts: list[str] = []  # prompt names played, PCM as "<pcm>"
        self.languages: list[str] = []  # the language each prompt was played in
        self.collects: list[dict[str, Any]] = []
        self.connected: list[str] = []
        self.digits_received = 0
        self.recording: Any = None
        self.record_paths: list[Path] = []

    def answer(self) -> None:
        self.answered = True

    async def play(self, prompts: Sequence[Any], *, barge_in: bool = True) -> bool:
        assert not self.ended, "play after hangup"
        for p in prompts:
            self.prompts.append(p if isinstance(p, str) else "<pcm>")
            self.languages.append(self.language)
        await asyncio.sleep(0)
        return True

    async def collect(
        self,
        max_digits: int,
        *,
        terminator: str = "#",
        first_timeout: float = 5.0,
        inter_digit_timeout: float = 3.0,
    ) -> str:
        assert not self.ended, "collect after hangup"
        self.collects.append(
            {"max_digits": max_digits, "terminator": terminator, "first_timeout": first_timeout}
        )
        item = self.script.pop(0) if self.script else ""
        if item is BLOCK:
            await asyncio.sleep(first_timeout)
            return ""
        await asyncio.sleep(0)
        assert isinstance(item, str)
        self.digits_received += len(item)
        return item

    async def say_number(self, value: int | str, *, barge_in: bool = True) -> bool:
        return await self.play([f"number:{value}"], barge_in=barge_in)

    async def connect(self, number: str) -> bool:
        self.connected.append(number)
        await asyncio.sleep(0)
        return self.connect_ok

    def hangup(self, status: int = 480) -> None:
        self.ended = True


MENUS_RAW: dict[str, Any] = {
    "hotline": {
        "prompt": ["welcome", "main_menu"],
        "timeout_s": 4,
        "retries": 3,
        "keys": {
            "1": "flow:quote",
            "2": "flow:balance",
            "3": "menu:trading",
            "5": "flow:cancel",
            "6": "voicemail:a_shares",
            "7": "transfer:2001",
            "8": "lang:en",
            "9": "menu:hotline",
            "0": "queue:a_shares",
            "*": "hangup",
        },
    },
    "trading": {
        "prompt": "order_buy_or_sell",
        "retries": 2,
        "fallback": "menu:hotline",
        "keys": {"1": "flow:order", "#": "menu:hotline"},
    },
}
MAIN = ["welcome", "main_menu"]


def menus() -> dict[str, Any]:
    parsed, problems = parse_menus(MENUS_RAW, prompt_names=PROMPTS, queues={"a_shares"})
    assert problems == []
    return parsed


async def run(session: FakeSession, flows: dict[str, Any] | None = None, **kw: Any) -> None:
    app = make_ivr_app(menus(), flows if flows is not None else {}, **kw)
    await app(session)  # type: ignore[arg-type]


async def test_valid_key_runs_flow_then_returns_to_menu() -> None:
    seen: list[tuple[str, str]] = []

    async def quote(session: Any, ctx: IvrContext) -> None:
        seen.append((session.call_id, ctx.menu))
        await ctx.play(["quote_enter_code"])

    s = FakeSession(["1", "*"])
    await run(s, {"quote": quote})
    assert seen == [("call-1", "hotline")]
    assert s.prompts == [*MAIN, "quote_enter_code", *MAIN, "goodbye"]
    assert s.answered and s.ended
    assert s.collects[0] == {"max_digits": 1, "terminator": "", "first_timeout": 4.0}


async def test_invalid_key_then_valid() -> None:
    s = FakeSession(["4", "*"])
    await run(s)
    assert s.prompts == [*MAIN, "invalid_entry", *MAIN, "goodbye"]


async def test_no_input_retries_then_fallback_hangup() -> None:
    s = FakeSession(["", "", "", "1"])
    await run(s)
    assert s.prompts == [*MAIN, "no_input"] * 3 + ["goodbye"]
    assert s.ended and len(s.collects) == 3


async def test_failures_mix_and_reset_after_a_valid_key() -> None:
    # two failures, then 9 (replay: a new menu visit resets the count), then three more failures
    s = FakeSession(["", "4", "9", "x", "", ""])
    await run(s)
    first_visit = [*MAIN, "no_input", *MAIN, "invalid_entry", *MAIN]
    second_visit = [*MAIN, "invalid_entry", *MAIN, "no_input", *MAIN, "no_input", "goodbye"]
    assert s.prompts == [*first_visit, *second_visit]


async def test_fallback_to_another_menu() -> None:
    s = FakeSession(["3", "", "", "*"])
    await run(s)
    assert s.prompts == [
        *MAIN,
        "order_buy_or_sell",
        "no_input",
        "order_buy_or_sell",
        "no_input",
        *MAIN,
        "goodbye",
    ]


async def test_lang_switches_language_and_replays_menu() -> None:
    s = FakeSession(["8", "*"])
    await run(s)
    assert s.language == "en"
    assert s.prompts == [*MAIN, *MAIN, "goodbye"]
    assert s.languages == ["zh", "zh", "en", "en", "en"]


async def test_submenu_and_back_with_hash() -> None:
    ordered: list[str] = []

    async def order(session: Any, ctx: IvrContext) -> None:
        ordered.append(ctx.menu)

    s = FakeSession(["3", "1", "#", "*"])
    await run(s, {"order": order})
    assert ordered == ["trading"]
    assert s.prompts == [*MAIN, "order_buy_or_sell", "order_buy_or_sell", *MAIN, "goodbye"]


async def test_transfer_connects() -> None:
    s = FakeSession(["7"])
    await run(s)
    assert s.connected == ["2001"]
    assert s.prompts == MAIN
    assert not s.ended  # bridged: the call goes on without the IVR


async def test_transfer_failure_says_busy_and_returns() -> None:
    s = FakeSession(["7", "*"], connect_ok=False)
    await run(s)
    assert s.connected == ["2001"]
    assert s.prompts == [*MAIN, "system_busy", *MAIN, "goodbye"]


async def test_unknown_flow_at_runtime_says_system_busy() -> None:
    s = FakeSession(["2", "*"])
    await run(s, {"quote": lambda s, c: None})
    assert s.prompts == [*MAIN, "system_busy", *MAIN, "goodbye"]


async def test_flow_registry_is_read_at_run_time() -> None:
    flows: dict[str, Any] = {}
    app = make_ivr_app(menus(), flows)
    calls: list[str] = []

    async def balance(session: Any, ctx: IvrContext) -> None:
        calls.append("balance")
        ctx.data["account"] = "8888"
        ctx.finished = True

    flows["balance"] = balance
    s = FakeSession(["2", "*"])
    await app(s)  # type: ignore[arg-type]
    assert calls == ["balance"]
    assert s.prompts == MAIN  # finished: the IVR ended after the flow
    assert s.script == ["*"]


async def test_flow_goto_and_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def quote(session: Any, ctx: IvrContext) -> None:
        ctx.goto = "trading"

    async def cancel(session: Any, ctx: IvrContext) -> None:
        raise RuntimeError("backend down")

    s = FakeSession(["1", "#", "5", "*"])
    with caplog.at_level(logging.ERROR, "softswitch.ivr"):
        await run(s, {"quote": quote, "cancel": cancel})
    assert s.prompts == [*MAIN, "order_buy_or_sell", *MAIN, "system_busy", *MAIN, "goodbye"]
    assert "flow cancel failed" in caplog.text


async def test_queue_hook_default_and_custom() -> None:
    s = FakeSession(["0"])
    await run(s)
    assert s.prompts == [*MAIN, "queue_please_hold"]
    assert s.ended

    queued: list[str] = []

    async def on_queue(session: Any, name: str) -> None:
        queued.append(name)

    s = FakeSession(["0"])
    await run(s, on_queue=on_queue)
    assert queued == ["a_shares"] and not s.ended and s.connected == []


async def test_voicemail_action_runs_hook_or_says_busy() -> None:
    boxes: list[str] = []

    async def voicemail(session: Any, box: str) -> None:
        boxes.append(box)

    s = FakeSession(["6"])
    await run(s, voicemail=voicemail)
    assert boxes == ["a_shares"]

    s = FakeSession(["6", "*"])
    await run(s)
    assert s.prompts == [*MAIN, "system_busy", *MAIN, "goodbye"]


async def test_hangup_cancellation_propagates_and_logs_prompts(caplog: pytest.LogCaptureFixture) -> None:
    s = FakeSession(["4", BLOCK])
    app = make_ivr_app(menus(), {})
    with caplog.at_level(logging.INFO, "softswitch.ivr"):
        task = asyncio.create_task(app(s))  # type: ignore[arg-type]
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    lines = [r.getMessage() for r in caplog.records if "prompts:" in r.getMessage()]
    assert lines == ["ivr call-1 prompts: welcome,main_menu,invalid_entry,welcome,main_menu"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_prompt_log_once_per_call(caplog: pytest.LogCaptureFixture) -> None:
    s = FakeSession(["9", "*"])
    with caplog.at_level(logging.INFO, "softswitch.ivr"):
        await run(s)
    lines = [r.getMessage() for r in caplog.records if "prompts:" in r.getMessage()]
    assert lines == ["ivr call-1 prompts: welcome,main_menu,welcome,main_menu,goodbye"]
    counts = [r.getMessage() for r in caplog.records if "digits:" in r.getMessage()]
    assert counts == ["ivr call-1 digits: 2"]  # how many, never which (PINs)


async def test_pcm_prompts_are_logged_as_pcm() -> None:
    async def beep(session: Any, ctx: IvrContext) -> None:
        await ctx.play([np.zeros(160, np.int16), "goodbye"])
        ctx.finished = True

    s = FakeSession(["1"])
    app = make_ivr_app(menus(), {"quote": beep})
    await app(s)  # type: ignore[arg-type]
    assert s.prompts == [*MAIN, "<pcm>", "goodbye"]


# ---- parsing and validation ---------------------------------------------------------------


def test_parse_action() -> None:
    assert parse_action("flow:quote") == Action("flow", "quote")
    assert parse_action("hangup") == Action("hangup")
    assert parse_action("transfer:+8610*1") == Action("transfer", "+8610*1")
    assert str(parse_action("menu:x")) == "menu:x"
    for bad in ("flow", "dial:1000", "lang:fr", "menu:", "menu:a b", "hangup:now"):
        with pytest.raises(ValueError):
            parse_action(bad)


def test_valid_menus_parse() -> None:
    m = menus()
    assert set(m) == {"hotline", "trading"}
    assert m["hotline"].prompts == ("welcome", "main_menu")
    assert m["hotline"].timeout_s == 4.0 and m["hotline"].retries == 3
    assert m["hotline"].fallback == Action("hangup")
    assert m["trading"].fallback == Action("menu", "hotline")
    assert m["trading"].timeout_s == 5.0
    assert m["hotline"].keys["0"] == Action("queue", "a_shares")


def test_validation_reports_every_bad_reference() -> None:
    raw = {
        "hotline": {
            "prompt": "no_such_prompt",
            "timeout_s": 0,
            "retries": "3",
            "fallback": "queue:nowhere",
            "colour": "blue",
            "keys": {
                "1": "flow:quote",
                "2": "flow:dividends",
                "3": "menu:missing",
                "4": "queue:hk_stocks",
                "5": "voicemail:x",
                "6": 7,
                "66": "hangup",
                "7": "lang:fr",
            },
        },
        "empty": {"prompt": ["welcome", 3]},
        "bad name": {},
        "notatable": "x",
    }
    _, problems = parse_menus(raw, prompt_names=PROMPTS, queues={"a_shares"}, boxes_ok=False)
    got = dict(problems)
    assert len(got) == len(problems), problems  # one problem per key path here
    assert set(got) == {
        "ivr.hotline.prompt",
        "ivr.hotline.timeout_s",
        "ivr.hotline.retries",
        "ivr.hotline.fallback",
        "ivr.hotline.colour",
        "ivr.hotline.keys.2",
        "ivr.hotline.keys.3",
        "ivr.hotline.keys.4",
        "ivr.hotline.keys.5",
        "ivr.hotline.keys.6",
        "ivr.hotline.keys.66",
        "ivr.hotline.keys.7",
        "ivr.empty.prompt",
        "ivr.empty.keys",
        "ivr.bad name",
        "ivr.notatable",
    }
    assert got["ivr.hotline.prompt"] == "unknown prompt 'no_such_prompt'"
    assert got["ivr.hotline.keys.2"].startswith("unknown flow 'dividends'; expected one of: balance, cancel")
    assert got["ivr.hotline.keys.3"] == "unknown menu 'missing'; expected one of: empty, hotline"
    assert got["ivr.hotline.keys.4"] == "unknown queue 'hk_stocks'; expected one of: a_shares"
    assert got["ivr.hotline.fallback"] == "unknown queue 'nowhere'; expected one of: a_shares"
    assert "voicemail" in got["ivr.hotline.keys.5"]
    assert "unknown language 'fr'" in got["ivr.hotline.keys.7"]


def test_validation_is_lenient_without_lists() -> None:
    raw = {"m": {"prompt": "anything", "keys": {"0": "queue:any", "1": "voicemail:b"}}}
    menus_, problems = parse_menus(raw, prompt_names=None)
    assert problems == []
    assert menus_["m"].prompts == ("anything",)


def test_not_a_table() -> None:
    assert parse_menus(["x"], prompt_names=None) == ({}, [("ivr", "expected a table of menus ([ivr.NAME])")])


def test_builtin_flows_and_system_prompts_exist() -> None:
    assert BUILTIN_FLOWS == ("login", "quote", "balance", "positions", "order", "cancel")
    for lang in ("zh", "en"):
        names = set(load_manifest(ROOT / "prompts" / lang / "manifest.toml").prompts)
        assert set(SYSTEM_PROMPTS) <= names, lang
        assert {"welcome", "main_menu", "voicemail_after_beep", "voicemail_saved"} <= names
