"""The trading IVR flows (``flow:NAME`` menu actions): login, quote, balance, positions, order, cancel.

Every flow plays through :meth:`IvrContext.play` and reads keys with ``session.collect``. Rules
common to all of them:

- An invalid entry plays ``invalid_entry`` (no input: ``no_input``) and asks again; after
  :data:`MAX_TRIES` failures the flow returns to the menu it was started from.
- :class:`BrokerUnavailable` anywhere plays ``system_busy`` and returns (the call goes on).
- balance, positions, order and cancel run the login first when the call is not logged in.
- order: a price with a third decimal is refused with ``order_reject_price_tick`` (the 0.01 tick);
  a rejection by the broker is spoken (``order_rejected`` + ``order_reject_<reason>``).
- cancel: the open orders are read out by order number (as ``order_placed`` said it), and the
  caller keys the number of the one to cancel; an unknown number plays ``cancel_not_found``.
- The PIN is never logged and the account number only masked; the call recording is paused
  while the PIN is keyed (``pause_during_pin``).

Per-call IVR state lives in ``ctx.data``: ``account`` (logged in) and ``login_locked`` (too many
wrong PINs). A login also tells the rest of the call (the ACD) who called, in ``session.data``:
``account`` and ``tier`` ("vip" or "normal", which gives VIP callers priority in the queue).
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
    say_order_readback,
    say_price,
    say_stock,
)
from ..trading.base import (
    TICK,
    AuthOutcome,
    Broker,
    BrokerUnavailable,
    Order,
    Quote,
    RejectReason,
    Side,
    mask_account,
)
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
ORDER_NUMBER_MAX_DIGITS = 20
PIN_MAX_DIGITS = 12
CODE_DIGITS = 6
# stock_<code> prompts shipped in prompts/<lang>/manifest.toml
DEFAULT_STOCK_PROMPTS = frozenset(f"stock_{c}" for c in ("600519", "601318", "600036", "000001", "000858"))
# reasons with their own order_reject_<reason> prompt (all of them, in both languages); a reason
# outside this set says only order_rejected
SPOKEN_REJECTS = frozenset(RejectReason)
DEFAULT_TIER = "normal"  # when the broker cannot tell the tier at login

_PRICE = re.compile(r"^(\d{1,7})(?:\*(\d{1,4}))?$")  # * is the decimal point: 12*34 = 12.34


def _digits(entry: str) -> str | None:
    return entry if entry.isdigit() and entry.isascii() else None


def _code(entry: str) -> str | None:
    return entry if len(entry) == CODE_DIGITS and _digits(entry) else None


def _keyed_price(entry: str) -> Decimal | None:
    """The keyed price, on the tick or not; None when it is not a price at all."""
    m = _PRICE.match(entry)
    if m is None:
        return None
    price = Decimal(f"{m[1]}.{m[2]}" if m[2] else m[1])
    return price if price > 0 else None


def _price(entry: str) -> Decimal | None:
    """A positive price on the 0.01 tick (12*340 is 12.34; 12*345 is off the tick: None)."""
    price = _keyed_price(entry)
    if price is None or price != price.quantize(TICK):
        return None
    return price.quantize(TICK)


def _price_problem(entry: str) -> str | None:
    """order_reject_price_tick for a price with a third decimal, instead of invalid_entry."""
    price = _keyed_price(entry)
    return "order_reject_price_tick" if price is not None and price != price.quantize(TICK) else None


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
    problem: Callable[[str], str | None] | None = None,
) -> T | None:
    """Prompt, collect and parse, up to MAX_TRIES times; None when every try failed.

    A rejected entry plays ``problem(entry)`` when that names a prompt (why it was refused), else
    ``invalid_entry``; no entry at all plays ``no_input``.
    """
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
        why = problem(entry) if problem is not None and entry else None
        await ctx.play([why or ("invalid_entry" if entry else "no_input")])
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

    async def caller_tier(call_id: str, account: str) -> str:
        """The account's tier; DEFAULT_TIER when the broker fails (the login itself stands)."""
        try:
            return await broker.tier(account)
        except BrokerUnavailable as e:
            log.warning("ivr %s: tier of account %s unavailable: %s", call_id, mask_account(account), e)
            return DEFAULT_TIER

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
                tier = await caller_tier(session.call_id, account)
                session.data["account"] = account
                session.data["tier"] = tier
                log.info("ivr %s: account %s logged in (%s)", session.call_id, mask_account(account), tier)
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
            price = await _ask(ctx, ["order_enter_price"], 13, _price, problem=_price_problem)
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
            number = (
                say_digits(order_id, session.language) if order_id.isdigit() and order_id.isascii() else []
            )
            await ctx.play(["order_placed", *(["order_number_is", *number] if number else [])])
            return
        reason = result.reason
        log.info("ivr %s: order rejected: %s", session.call_id, reason.value if reason else "?")
        spoken = [f"order_reject_{reason.value}"] if reason is not None and reason in SPOKEN_REJECTS else []
        await ctx.play(["order_rejected", *spoken])

    async def cancel_flow(ctx: IvrContext) -> None:
        """Read out the open orders by order number; the caller keys the number of the one to cancel."""
        account = await login(ctx)
        if account is None:
            return
        lang = ctx.session.language
        orders = await broker.open_orders(account)
        if not orders:
            await ctx.play(["cancel_no_orders"])
            return
        numbered = _order_numbers(orders)
        listing: list[str] = []
        for number, o in numbered.items():
            listing += ["order_number_is", *say_digits(number, lang)]
            listing += say_order_readback(o.side, stock(ctx, o.code), o.qty, o.price, lang)

        by_value = {int(number): o for number, o in numbered.items()}  # 017 is order 17

        def pick(entry: str) -> Order | None:
            return by_value.get(int(entry)) if _digits(entry) else None

        def problem(entry: str) -> str | None:
            return "cancel_not_found" if _digits(entry) else None

        order = await _ask(
            ctx, [*listing, "cancel_enter_order"], ORDER_NUMBER_MAX_DIGITS + 1, pick, problem=problem
        )
        if order is None:
            return
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


def _order_numbers(orders: Sequence[Order]) -> dict[str, Order]:
    """The number each open order is read out and keyed by: its order id when every id is digits
    (as the broker confirmed it when the order was placed), else its position in the list (1, 2, ...)."""
    if all(o.order_id.isdigit() and o.order_id.isascii() for o in orders):
        return {o.order_id: o for o in orders}
    return {str(n): o for n, o in enumerate(orders, 1)}


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
