"""The trading IVR flows (``flow:NAME`` menu actions): login, quote, balance, positions, order, cancel.

Every flow plays through :meth:`IvrContext.play` and reads keys with ``session.collect``. Rules
common to all of them:

- An invalid entry plays ``invalid_entry`` (no input: ``no_input``) and asks again; after
  :data:`MAX_TRIES` failures the flow returns to the menu it was started from.
- :class:`BrokerUnavailable` anywhere plays ``system_busy`` and returns (the call goes on).
- balance, positions, order and cancel run the login first when the call is not logged in.
- The PIN is never logged and the account number only masked; the call recording is paused
  while the PIN is keyed (``pause_during_pin``).

Per-call state lives in ``ctx.data``: ``account`` (logged in) and ``login_locked`` (too many wrong PINs).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Container, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

from ..media.say import (
    say_change,
    say_digits,
    say_holding,
    say_money,
    say_number,
    say_order_readback,
    say_price,
    say_stock,
)
from ..trading.base import AuthOutcome, Broker, BrokerUnavailable, Quote, RejectReason, Side, mask_account
from .menu import Flow, IvrContext

if TYPE_CHECKING:
    from ..calls import CallSession

log = logging.getLogger("softswitch.ivr.flows")

T = TypeVar("T")

MAX_TRIES = 3  # invalid entries before a flow gives up
MAX_LOGIN_FAILURES = 3  # wrong PINs before the call's login is locked
FIRST_TIMEOUT = 5.0
INTER_DIGIT_TIMEOUT = 3.0
ACCOUNT_MAX_DIGITS = 20
PIN_MAX_DIGITS = 12
CODE_DIGITS = 6
# stock_<code> prompts shipped in prompts/<lang>/manifest.toml
DEFAULT_STOCK_PROMPTS = frozenset(f"stock_{c}" for c in ("600519", "601318", "600036", "000001", "000858"))
# reasons with their own order_reject_<reason> prompt; the others say only order_rejected
SPOKEN_REJECTS = frozenset(
    {
        RejectReason.INSUFFICIENT_CASH,
        RejectReason.INSUFFICIENT_POSITION,
        RejectReason.PRICE_LIMIT,
        RejectReason.LOT_SIZE,
        RejectReason.MARKET_CLOSED,
    }
)

_PRICE = re.compile(r"^(\d{1,7})(?:\*(\d{1,2}))?$")  # * is the decimal point: 12*34 = 12.34


def _digits(entry: str) -> str | None:
    return entry if entry.isdigit() and entry.isascii() else None


def _code(entry: str) -> str | None:
    return entry if len(entry) == CODE_DIGITS and _digits(entry) else None


def _price(entry: str) -> Decimal | None:
    m = _PRICE.match(entry)
    if m is None:
        return None
    price = Decimal(f"{m[1]}.{m[2]}" if m[2] else m[1])
    return price if price > 0 else None


def _quantity(entry: str) -> int | None:
    if _digits(entry) is None:
        return None
    qty = int(entry)
    return qty if qty > 0 else None


async def _ask(
    ctx: IvrContext,
    prompts: Sequence[str],
    max_digits: int,
    parse: Callable[[str], T | None],
    *,
    terminator: str = "#",
) -> T | None:
    """Prompt, collect and parse, up to MAX_TRIES times; None when every try failed."""
    for _ in range(MAX_TRIES):
        await ctx.play(prompts)
        entry = await ctx.session.collect(
            max_digits,
            terminator=terminator,
            first_timeout=FIRST_TIMEOUT,
            inter_digit_timeout=INTER_DIGIT_TIMEOUT,
        )
        value = parse(entry) if entry else None
        if value is not None:
            return value
        await ctx.play(["invalid_entry" if entry else "no_input"])
    return None


async def _choose(ctx: IvrContext, prompts: Sequence[str], keys: str) -> str | None:
    """One key out of ``keys``; None after MAX_TRIES invalid keys or silences."""
    return await _ask(ctx, prompts, 1, lambda d: d if d in keys else None, terminator="")


def make_flows(
    broker: Broker,
    *,
    pause_during_pin: bool = True,
    prompt_names: Callable[[str], Container[str]] | None = None,
) -> dict[str, Flow]:
    """The built-in flows against ``broker``, keyed by name (login, quote, balance, positions, order, cancel).

    ``prompt_names(lang)`` tells which prompts exist (e.g. ``PromptLibrary.names``), so a stock is
    said by its recorded ``stock_<code>`` name when there is one; default: the shipped stock names.
    """

    def stock(ctx: IvrContext, code: str) -> list[str]:
        lang = ctx.session.language
        available = prompt_names(lang) if prompt_names is not None else DEFAULT_STOCK_PROMPTS
        return say_stock(code, lang, available)

    async def login(ctx: IvrContext) -> str | None:
        """The logged-in account, running the login dialogue when needed; None when it failed."""
        session, data = ctx.session, ctx.data
        if data.get("login_locked"):
            await ctx.play(["login_locked"])
            return None
        account: str | None = data.get("account")
        if account:
            return account
        failures = 0
        while True:
            account = await _ask(ctx, ["enter_account"], ACCOUNT_MAX_DIGITS + 1, _digits)
            if account is None:
                return None
            if pause_during_pin:
                session.pause_recording()
            try:
                pin = await _ask(ctx, ["enter_pin"], PIN_MAX_DIGITS + 1, _digits)
            finally:
                if pause_during_pin:
                    session.resume_recording()
            if pin is None:
                return None
            outcome = await broker.authenticate(account, pin)
            del pin
            if outcome is AuthOutcome.OK:
                data["account"] = account
                log.info("ivr %s: account %s logged in", session.call_id, mask_account(account))
                await ctx.play(["login_ok"])
                return account
            failures += 1
            if outcome is AuthOutcome.LOCKED or failures >= MAX_LOGIN_FAILURES:
                data["login_locked"] = True
                log.warning(
                    "ivr %s: login locked for account %s (%s, %d failures)",
                    session.call_id,
                    mask_account(account),
                    outcome.value,
                    failures,
                )
                await ctx.play(["login_locked"])
                return None
            log.info(
                "ivr %s: login failed for account %s (%d)", session.call_id, mask_account(account), failures
            )
            await ctx.play(["login_failed"])

    async def ask_stock(ctx: IvrContext, prompt: str) -> Quote | None:
        """A 6-digit code the broker knows, as its quote; None after MAX_TRIES bad codes."""
        for _ in range(MAX_TRIES):
            code = await _ask(ctx, [prompt], CODE_DIGITS + 1, _code)
            if code is None:
                return None
            quote = await broker.quote(code)
            if quote is not None:
                return quote
            await ctx.play(["quote_unknown_code"])
        return None

    async def quote_flow(ctx: IvrContext) -> None:
        lang = ctx.session.language
        while True:
            q = await ask_stock(ctx, "quote_enter_code")
            if q is None:
                return
            await ctx.play(
                [
                    "quote_name",
                    *stock(ctx, q.code),
                    "quote_current_price",
                    *say_price(q.price, lang),
                    "word_yuan",
                    *say_change(q.change_pct, lang),
                ]
            )
            if await _choose(ctx, ["quote_menu"], "1*") != "1":
                return

    async def balance_flow(ctx: IvrContext) -> None:
        account = await login(ctx)
        if account is None:
            return
        lang = ctx.session.language
        b = await broker.balance(account)
        await ctx.play(
            ["balance_total", *say_money(b.cash, lang), "balance_available", *say_money(b.available, lang)]
        )

    async def positions_flow(ctx: IvrContext) -> None:
        account = await login(ctx)
        if account is None:
            return
        lang = ctx.session.language
        positions = await broker.positions(account)
        if not positions:
            await ctx.play(["positions_none"])
            return
        i = 0
        while i < len(positions):
            p = positions[i]
            await ctx.play(say_holding(stock(ctx, p.code), p.qty, lang))
            key = await _choose(ctx, ["positions_menu"], "12*")
            if key is None or key == "*":
                return
            if key == "1":
                i += 1
        await ctx.play(["positions_end"])

    async def order_flow(ctx: IvrContext) -> None:
        account = await login(ctx)
        if account is None:
            return
        session = ctx.session
        while True:
            key = await _choose(ctx, ["order_buy_or_sell"], "12")
            if key is None:
                return
            side: Side = "buy" if key == "1" else "sell"
            q = await ask_stock(ctx, "order_enter_code")
            if q is None:
                return
            price = await _ask(ctx, ["order_enter_price"], 11, _price)
            if price is None:
                return
            qty = await _ask(ctx, ["order_enter_quantity"], 9, _quantity)
            if qty is None:
                return
            readback = say_order_readback(side, stock(ctx, q.code), qty, price, session.language)
            key = await _choose(ctx, [*readback, "order_confirm"], "12")
            if key is None:
                return
            if key == "1":
                break
        # Only now, after the caller confirmed, does the order reach the broker.
        result = await broker.place_order(account, side, q.code, price, qty)
        if result.accepted:
            order_id = result.order_id or ""
            log.info("ivr %s: order %s placed: %s %s x%d", session.call_id, order_id, side, q.code, qty)
            number = say_digits(order_id) if order_id.isdigit() and order_id.isascii() else []
            await ctx.play(["order_placed", *(["order_number_is", *number] if number else [])])
            return
        reason = result.reason
        log.info("ivr %s: order rejected: %s", session.call_id, reason.value if reason else "?")
        spoken = [f"order_reject_{reason.value}"] if reason is not None and reason in SPOKEN_REJECTS else []
        await ctx.play(["order_rejected", *spoken])

    async def cancel_flow(ctx: IvrContext) -> None:
        account = await login(ctx)
        if account is None:
            return
        lang = ctx.session.language
        orders = await broker.open_orders(account)
        if not orders:
            await ctx.play(["cancel_no_orders"])
            return
        listing: list[str] = []
        for n, o in enumerate(orders, 1):
            number = say_digits(o.order_id, lang) if o.order_id.isdigit() and o.order_id.isascii() else []
            listing += [*say_number(n, lang), "order_number_is", *number]
            listing += say_order_readback(o.side, stock(ctx, o.code), o.qty, o.price, lang)

        def pick(entry: str) -> int | None:
            n = _quantity(entry)
            return n if n is not None and n <= len(orders) else None

        index = await _ask(ctx, [*listing, "cancel_enter_order"], 4, pick)
        if index is None:
            return
        order = orders[index - 1]
        if await _choose(ctx, ["cancel_confirm"], "12") != "1":
            return
        ok = await broker.cancel_order(account, order.order_id)
        log.info(
            "ivr %s: cancel order %s: %s", ctx.session.call_id, order.order_id, "done" if ok else "failed"
        )
        await ctx.play(["cancel_done" if ok else "cancel_failed"])

    async def login_flow(ctx: IvrContext) -> None:
        await login(ctx)

    bodies: dict[str, Callable[[IvrContext], Awaitable[None]]] = {
        "login": login_flow,
        "quote": quote_flow,
        "balance": balance_flow,
        "positions": positions_flow,
        "order": order_flow,
        "cancel": cancel_flow,
    }
    return {name: _guarded(name, body) for name, body in bodies.items()}


def _guarded(name: str, body: Callable[[IvrContext], Awaitable[None]]) -> Flow:
    """The flow as the menu calls it: BrokerUnavailable becomes ``system_busy`` and a return."""

    async def flow(session: CallSession, ctx: IvrContext) -> None:
        try:
            await body(ctx)
        except BrokerUnavailable as e:
            log.warning("ivr %s: flow %s: broker unavailable: %s", session.call_id, name, e)
            await ctx.play(["system_busy"], barge_in=False)

    flow.__name__ = f"flow_{name}"
    return flow
