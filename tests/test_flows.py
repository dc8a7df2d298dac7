"""Trading IVR flows against a fake CallSession (scripted digits) and a real SimBroker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from softswitch.ivr.flows import _order_numbers, make_flows
from softswitch.ivr.menu import IvrContext
from softswitch.media.prompts import load_manifest
from softswitch.media.say import say_change, say_money, say_price
from softswitch.trading import BrokerUnavailable, SimBroker, mask_account, seed_demo
from softswitch.trading.base import Order, OrderResult, OrderStatus, RejectReason

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = set(load_manifest(ROOT / "prompts" / "zh" / "manifest.toml").prompts)
PROMPTS_EN = set(load_manifest(ROOT / "prompts" / "en" / "manifest.toml").prompts)
NOW = 1_700_000_000.0
ACCOUNT, PIN = "10000001", "123456"
LOGIN = [ACCOUNT, PIN]


class FakeSession:
    """Scripted collect(); every play, collect and recording pause/resume lands in ``events``."""

    def __init__(self, digits: Sequence[str] = (), language: str = "zh") -> None:
        self.script = list(digits)
        self.language = language
        self.call_id = "call-1"
        self.events: list[tuple[str, Any]] = []
        self.paused = False
        self.data: dict[str, Any] = {}

    @property
    def prompts(self) -> list[str]:
        return [arg for kind, arg in self.events if kind == "play"]

    async def play(self, prompts: Sequence[Any], *, barge_in: bool = True) -> bool:
        self.events.extend(("play", p) for p in prompts)
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
        item = self.script.pop(0) if self.script else ""
        self.events.append(("collect", (item, self.paused)))
        await asyncio.sleep(0)
        return item

    def pause_recording(self) -> None:
        self.paused = True
        self.events.append(("pause", None))

    def resume_recording(self) -> None:
        self.paused = False
        self.events.append(("resume", None))


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    db = tmp_path / "broker.sqlite"
    seed_demo(db)
    b = SimBroker(db, clock=lambda: NOW)
    yield b
    b.close()


async def run(
    broker: Any, flow: str, digits: Sequence[str], ctx: IvrContext | None = None, **kw: Any
) -> IvrContext:
    session = FakeSession(digits)
    if ctx is None:
        ctx = IvrContext(session, {})  # type: ignore[arg-type]
    else:
        ctx.session = session  # type: ignore[assignment]
    before = len(ctx.played)
    await make_flows(broker, **kw)[flow](session, ctx)  # type: ignore[arg-type]
    assert session.script == [], "flow left scripted input unread"
    assert set(ctx.played) <= PROMPTS, set(ctx.played) - PROMPTS
    assert ctx.played[before:] == session.prompts
    return ctx


async def test_flow_names(broker: Any) -> None:
    assert set(make_flows(broker)) == {"login", "quote", "balance", "positions", "order", "cancel"}


async def test_login_ok(broker: Any) -> None:
    ctx = await run(broker, "login", LOGIN)
    assert ctx.played == ["enter_account", "enter_pin", "login_ok"]
    assert ctx.data["account"] == ACCOUNT
    # the rest of the call (the ACD) learns who called
    assert ctx.session.data == {"account": ACCOUNT, "tier": "normal"}


async def test_login_tells_the_call_the_vip_tier(broker: Any) -> None:
    ctx = await run(broker, "login", ["10000002", "654321"])
    assert ctx.session.data == {"account": "10000002", "tier": "vip"}


async def test_login_stands_when_the_tier_is_unavailable(
    broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class NoTier(SimBroker):
        async def tier(self, account: str) -> str:
            raise BrokerUnavailable("timeout")

    b = NoTier(broker.db_path, clock=lambda: NOW)
    try:
        ctx = await run(b, "login", ["10000002", "654321"])
    finally:
        b.close()
    assert ctx.played[-1] == "login_ok"
    assert ctx.session.data == {"account": "10000002", "tier": "normal"}
    assert "10000002" not in caplog.text


async def test_failed_login_tells_the_call_nothing(broker: Any) -> None:
    ctx = await run(broker, "login", [ACCOUNT, "1", ACCOUNT, "2", ACCOUNT, "3"])
    assert ctx.session.data == {}


async def test_login_wrong_three_times_locks(broker: Any) -> None:
    ctx = await run(broker, "login", [ACCOUNT, "1", ACCOUNT, "2", ACCOUNT, "3"])
    assert ctx.played.count("login_failed") == 2
    assert ctx.played[-1] == "login_locked"
    assert ctx.data["login_locked"] is True and "account" not in ctx.data
    # later flows needing login just say login_locked, without asking anything
    await run(broker, "balance", [], ctx)
    assert ctx.played[-1] == "login_locked"
    await run(broker, "login", [], ctx)
    assert ctx.played[-1] == "login_locked"


async def test_login_invalid_entry_retries_then_gives_up(broker: Any) -> None:
    ctx = await run(broker, "login", ["12*3", "", "abc"])
    assert ctx.played == [
        "enter_account",
        "invalid_entry",
        "enter_account",
        "no_input",
        "enter_account",
        "invalid_entry",
    ]
    assert "account" not in ctx.data and "login_locked" not in ctx.data


async def test_recording_paused_around_pin_only(broker: Any) -> None:
    session = FakeSession([ACCOUNT, "", PIN])
    ctx = IvrContext(session, {})  # type: ignore[arg-type]
    await make_flows(broker)["login"](session, ctx)  # type: ignore[arg-type]
    collects = [arg for kind, arg in session.events if kind == "collect"]
    assert collects == [(ACCOUNT, False), ("", True), (PIN, True)]
    kinds = [k for k, _ in session.events]
    assert kinds.count("pause") == kinds.count("resume") == 1
    assert kinds.index("pause") < kinds.index("resume") < session.events.index(("play", "login_ok"))
    assert not session.paused


async def test_recording_resumed_when_broker_fails_and_not_paused_when_disabled(broker: Any) -> None:
    class Down(SimBroker):
        async def authenticate(self, account: str, pin: str) -> Any:
            raise BrokerUnavailable("timeout")

    down = Down(broker.db_path)
    try:
        session = FakeSession(LOGIN)
        ctx = IvrContext(session, {})  # type: ignore[arg-type]
        await make_flows(down)["login"](session, ctx)  # type: ignore[arg-type]
        assert ctx.played[-1] == "system_busy" and not session.paused
    finally:
        down.close()
    session = FakeSession(LOGIN)
    await make_flows(broker, pause_during_pin=False)["login"](session, IvrContext(session, {}))  # type: ignore[arg-type]
    assert all(k not in ("pause", "resume") for k, _ in session.events)


async def test_quote_known(broker: Any) -> None:
    q = await broker.quote("600519")
    ctx = await run(broker, "quote", ["600519", "*"])
    expected = ["quote_name", "stock_600519", "quote_current_price", *say_price(q.price), "word_yuan"]
    expected += say_change(q.change_pct)
    assert ctx.played == ["quote_enter_code", *expected, "quote_menu"]


async def test_quote_unknown_and_code_without_prompt(broker: Any) -> None:
    ctx = await run(broker, "quote", ["999999", "12345", "601398", "1", "999999", "999999", "999999"])
    assert ctx.played[:4] == ["quote_enter_code", "quote_unknown_code", "quote_enter_code", "invalid_entry"]
    # 601398 has no stock_ prompt: read digit by digit
    assert ctx.played[6:12] == ["digit_6", "digit_0", "digit_1", "digit_3", "digit_9", "digit_8"]
    assert ctx.played.count("quote_unknown_code") == 4


async def test_balance_runs_login_first(broker: Any) -> None:
    ctx = await run(broker, "balance", LOGIN)
    b = await broker.balance(ACCOUNT)
    assert ctx.played == [
        "enter_account",
        "enter_pin",
        "login_ok",
        "balance_total",
        *say_money(b.cash),
        "balance_available",
        *say_money(b.available),
    ]
    # already logged in: no second login
    await run(broker, "balance", [], ctx)
    assert ctx.played.count("enter_account") == 1


async def test_positions_navigation(broker: Any) -> None:
    ctx = await run(broker, "positions", [*LOGIN, "1", "2", "1", "1"])
    holdings = [i for i, p in enumerate(ctx.played) if p == "position_holding"]
    assert len(holdings) == 4  # first, second, second again, third
    stocks = [ctx.played[i + 1] for i in holdings]
    assert stocks[1] == stocks[2] and len(set(stocks)) == 3
    assert ctx.played[-1] == "positions_end"
    n = len(ctx.played)
    ctx = await run(broker, "positions", ["*"], ctx)
    assert ctx.played[n:][0] == "position_holding" and ctx.played[-1] == "positions_menu"
    assert ctx.played.count("positions_end") == 1


async def test_order_buy_confirmed(broker: Any) -> None:
    ctx = await run(broker, "order", [*LOGIN, "1", "600036", "39*82", "200", "1"])
    assert "order_you_are_buying" in ctx.played
    i = ctx.played.index("order_you_are_buying")
    assert ctx.played[i + 1] == "stock_600036"
    price = [*say_price("39.82"), "word_yuan", "order_confirm"]
    j = ctx.played.index("order_at_price") + 1
    assert ctx.played[j : j + len(price)] == price
    orders = await broker.open_orders(ACCOUNT)
    assert [(o.side, o.code, o.price, o.qty) for o in orders] == [("buy", "600036", Decimal("39.82"), 200)]
    i = ctx.played.index("order_placed")
    assert ctx.played[i:] == ["order_placed", "order_number_is", *[f"digit_{d}" for d in orders[0].order_id]]


async def test_order_reenter_then_confirm(broker: Any) -> None:
    script = [*LOGIN, "1", "600036", "39*82", "200", "2", "2", "600519", "1528", "100", "1"]
    ctx = await run(broker, "order", script)
    assert ctx.played.count("order_confirm") == 2
    assert "order_you_are_buying" in ctx.played and "order_you_are_selling" in ctx.played
    orders = await broker.open_orders(ACCOUNT)
    assert [(o.side, o.code, o.price, o.qty) for o in orders] == [("sell", "600519", Decimal("1528"), 100)]


async def test_order_rejected_price_limit(broker: Any) -> None:
    ctx = await run(broker, "order", [*LOGIN, "1", "600519", "9999*99", "100", "1"])
    assert ctx.played[-2:] == ["order_rejected", "order_reject_price_limit"]
    assert await broker.open_orders(ACCOUNT) == []


async def test_order_not_placed_without_confirmation(broker: Any) -> None:
    ctx = await run(broker, "order", [*LOGIN, "1", "600036", "39*82", "200", "", "9", "#"])
    assert ctx.played.count("order_confirm") == 3 and "order_placed" not in ctx.played
    assert await broker.open_orders(ACCOUNT) == []


async def test_order_price_off_the_tick_is_explained(broker: Any) -> None:
    # 39*825 has a third decimal: said why, then asked again; 39*820 is 39.82
    ctx = await run(broker, "order", [*LOGIN, "1", "600036", "39*825", "39*820", "200", "1"])
    i = ctx.played.index("order_enter_price")
    assert ctx.played[i : i + 4] == ["order_enter_price", "order_reject_price_tick", "order_enter_price",
                                     "order_enter_quantity"]  # fmt: skip
    orders = await broker.open_orders(ACCOUNT)
    assert [(o.code, o.price, o.qty) for o in orders] == [("600036", Decimal("39.82"), 200)]


async def test_order_price_off_the_tick_three_times_gives_up(broker: Any) -> None:
    ctx = await run(broker, "order", [*LOGIN, "1", "600036", "39*825", "1*001", "0*5555"])
    assert ctx.played.count("order_reject_price_tick") == 3 and ctx.played[-1] == "order_reject_price_tick"
    assert "order_enter_quantity" not in ctx.played and "invalid_entry" not in ctx.played


@pytest.mark.parametrize("reason", list(RejectReason))
async def test_every_broker_rejection_is_spoken(broker: Any, reason: RejectReason) -> None:
    class Rejecting(SimBroker):
        async def place_order(self, *a: Any) -> OrderResult:
            return OrderResult.rejected(reason)

    b = Rejecting(broker.db_path, clock=lambda: NOW)
    try:
        ctx = await run(b, "order", [*LOGIN, "1", "600036", "39*82", "200", "1"])
    finally:
        b.close()
    name = f"order_reject_{reason.value}"
    assert ctx.played[-2:] == ["order_rejected", name]
    assert name in PROMPTS and name in PROMPTS_EN


async def test_order_invalid_price_retries(broker: Any) -> None:
    ctx = await run(broker, "order", [*LOGIN, "3", "1", "600036", "1*2*3", "39*", "*5"])
    assert ctx.played[ctx.played.index("order_buy_or_sell") + 1] == "invalid_entry"
    assert ctx.played.count("order_enter_price") == 3
    assert "order_enter_quantity" not in ctx.played
    assert await broker.open_orders(ACCOUNT) == []


def _spoken_ids(played: list[str]) -> list[str]:
    """The order numbers read out after each order_number_is."""
    out = []
    for i, p in enumerate(played):
        if p == "order_number_is":
            digits = []
            for q in played[i + 1 :]:
                if not q.startswith("digit_"):
                    break
                digits.append(q[-1])
            out.append("".join(digits))
    return out


async def test_cancel_by_the_order_number_read_out(broker: Any) -> None:
    # the caller keys the order number as the listing reads it (and as order_placed said it)
    ids = []
    for _ in range(3):
        placed = await broker.place_order(ACCOUNT, "buy", "600036", Decimal("39.82"), 100)
        assert placed.accepted and placed.order_id
        ids.append(placed.order_id)
    target = ids[1]
    unknown = str(max(int(i) for i in ids) + 7)
    ctx = await run(broker, "cancel", [*LOGIN, "1*2", unknown, f"00{target}", "1"])
    listing = ctx.played[: ctx.played.index("cancel_enter_order")]
    assert _spoken_ids(listing) == ids
    assert "order_you_are_buying" in listing and "stock_600036" in listing
    assert ctx.played.count("cancel_enter_order") == 3
    enter = [i for i, p in enumerate(ctx.played) if p == "cancel_enter_order"]
    assert ctx.played[enter[0] + 1] == "invalid_entry" and ctx.played[enter[1] + 1] == "cancel_not_found"
    assert ctx.played[-2:] == ["cancel_confirm", "cancel_done"]
    assert [o.order_id for o in await broker.open_orders(ACCOUNT)] == [ids[0], ids[2]]


async def test_cancel_an_order_index_is_not_an_order_number(broker: Any) -> None:
    placed = await broker.place_order(ACCOUNT, "buy", "600036", Decimal("39.82"), 100)
    assert placed.accepted and placed.order_id
    wrong = str(int(placed.order_id) + 1)
    ctx = await run(broker, "cancel", [*LOGIN, wrong, "", wrong])
    assert ctx.played.count("cancel_not_found") == 2 and "no_input" in ctx.played
    assert "cancel_confirm" not in ctx.played
    assert len(await broker.open_orders(ACCOUNT)) == 1


async def test_cancel_flow_then_nothing_left(broker: Any) -> None:
    placed = await broker.place_order(ACCOUNT, "buy", "600036", Decimal("39.82"), 100)
    assert placed.order_id
    ctx = await run(broker, "cancel", [*LOGIN, placed.order_id, "1"])
    assert ctx.played[-2:] == ["cancel_confirm", "cancel_done"]
    assert await broker.open_orders(ACCOUNT) == []
    await run(broker, "cancel", [], ctx)
    assert ctx.played[-1] == "cancel_no_orders"


async def test_cancel_declined_keeps_order(broker: Any) -> None:
    placed = await broker.place_order(ACCOUNT, "buy", "600036", Decimal("39.82"), 100)
    assert placed.order_id
    ctx = await run(broker, "cancel", [*LOGIN, placed.order_id, "2"])
    assert ctx.played[-1] == "cancel_confirm"
    assert len(await broker.open_orders(ACCOUNT)) == 1


def test_orders_without_numeric_ids_are_numbered_by_position() -> None:
    def order(order_id: str) -> Order:
        return Order(order_id, "buy", "600036", "x", Decimal("1"), 100, OrderStatus.OPEN, NOW)

    numeric = [order("17"), order("4")]
    assert _order_numbers(numeric) == {"17": numeric[0], "4": numeric[1]}
    mixed = [order("17"), order("B-2")]
    assert _order_numbers(mixed) == {"1": mixed[0], "2": mixed[1]}


@pytest.mark.parametrize(
    ("flow", "script"),
    [
        ("quote", ["600519"]),
        ("balance", LOGIN),
        ("positions", LOGIN),
        ("order", [*LOGIN, "1", "600036", "39*82", "100", "1"]),
        ("cancel", LOGIN),
    ],
)
async def test_broker_unavailable_says_system_busy(tmp_path: Path, flow: str, script: list[str]) -> None:
    db = tmp_path / "b.sqlite"
    seed_demo(db)

    class Flaky(SimBroker):
        async def quote(self, code: str) -> Any:
            if flow == "quote":
                raise BrokerUnavailable("timeout")
            return await super().quote(code)

        async def balance(self, account: str) -> Any:
            raise BrokerUnavailable("timeout")

        async def positions(self, account: str) -> Any:
            raise BrokerUnavailable("timeout")

        async def place_order(self, *a: Any) -> Any:
            raise BrokerUnavailable("timeout")

        async def open_orders(self, account: str) -> Any:
            raise BrokerUnavailable("timeout")

    b = Flaky(db, clock=lambda: NOW)
    try:
        ctx = await run(b, flow, script)
    finally:
        b.close()
    assert ctx.played[-1] == "system_busy"


async def test_pin_and_account_never_logged(broker: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = await run(broker, "login", [ACCOUNT, "654987", ACCOUNT, PIN])
    await run(broker, "order", ["1", "600036", "39*82", "100", "1"], ctx)
    (order,) = await broker.open_orders(ACCOUNT)
    await run(broker, "cancel", [order.order_id, "1"], ctx)
    text = caplog.text
    assert mask_account(ACCOUNT) in text
    for secret in (ACCOUNT, PIN, "654987"):
        assert secret not in text
    session = FakeSession([ACCOUNT, "1", ACCOUNT, "2", ACCOUNT, "3"])
    await make_flows(broker)["login"](session, IvrContext(session, {}))  # type: ignore[arg-type]
    assert "locked" in caplog.text and ACCOUNT not in caplog.text
