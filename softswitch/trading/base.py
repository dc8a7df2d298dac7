"""The brokerage interface the IVR calls: value types, the :class:`Broker` protocol and the timeout guard.

Every broker call is async and bounded: a slow or failing back end raises :class:`BrokerUnavailable`,
which the IVR turns into "system busy, please try again later".
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, TypeVar

log = logging.getLogger("softswitch.trading")

T = TypeVar("T")
Side = Literal["buy", "sell"]
SIDES: tuple[Side, ...] = ("buy", "sell")
CURRENCY = "CNY"
TICK = Decimal("0.01")
LOT = 100


class BrokerUnavailable(Exception):
    """The back end timed out or failed; the caller should say "system busy"."""


class AuthOutcome(enum.Enum):
    """Result of :meth:`Broker.authenticate`.

    There is deliberately no "unknown account" value: an unknown account gets ``WRONG_PIN`` (and,
    after as many failures, ``LOCKED``) exactly like a known one, so probing account numbers
    learns nothing.
    """

    OK = "ok"
    WRONG_PIN = "wrong_pin"  # also: unknown account
    LOCKED = "locked"

    @property
    def ok(self) -> bool:
        return self is AuthOutcome.OK


class RejectReason(enum.Enum):
    INSUFFICIENT_CASH = "insufficient_cash"
    INSUFFICIENT_POSITION = "insufficient_position"
    LOT_SIZE = "lot_size"
    PRICE_TICK = "price_tick"
    PRICE_LIMIT = "price_limit"
    UNKNOWN_CODE = "unknown_code"
    MARKET_CLOSED = "market_closed"
    UNKNOWN_ACCOUNT = "unknown_account"


class OrderStatus(enum.Enum):
    OPEN = "open"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Quote:
    code: str
    name: str
    name_en: str
    prev_close: Decimal
    price: Decimal
    change: Decimal  # price - prev_close
    change_pct: Decimal  # percent, 2 decimals


@dataclass(frozen=True, slots=True)
class Balance:
    cash: Decimal
    available: Decimal  # cash minus what open buy orders reserve
    currency: str = CURRENCY


@dataclass(frozen=True, slots=True)
class Position:
    code: str
    name: str
    qty: int
    available_qty: int  # qty minus what open sell orders reserve
    cost: Decimal  # average cost per share
    price: Decimal  # current price


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    side: Side
    code: str
    name: str
    price: Decimal
    qty: int
    status: OrderStatus
    created: float  # Unix time


@dataclass(frozen=True, slots=True)
class OrderResult:
    """``accepted`` with ``order_id``, or not accepted with ``reason``."""

    accepted: bool
    order_id: str | None = None
    reason: RejectReason | None = None

    @classmethod
    def ok(cls, order_id: str) -> OrderResult:
        return cls(True, order_id, None)

    @classmethod
    def rejected(cls, reason: RejectReason) -> OrderResult:
        return cls(False, None, reason)


class Broker(Protocol):
    """What the IVR needs from a brokerage; every method may raise :class:`BrokerUnavailable`."""

    async def authenticate(self, account: str, pin: str) -> AuthOutcome: ...
    async def tier(self, account: str) -> str: ...  # "vip" | "normal"
    async def quote(self, code: str) -> Quote | None: ...
    async def balance(self, account: str) -> Balance: ...
    async def positions(self, account: str) -> list[Position]: ...
    async def place_order(
        self, account: str, side: Side, code: str, price: Decimal, qty: int
    ) -> OrderResult: ...
    async def open_orders(self, account: str) -> list[Order]: ...
    async def cancel_order(self, account: str, order_id: str) -> bool: ...


async def with_timeout(aw: Awaitable[T], seconds: float) -> T:
    """Await ``aw`` for at most ``seconds``; a timeout or any back-end error becomes :class:`BrokerUnavailable`."""
    try:
        return await asyncio.wait_for(aw, seconds)
    except BrokerUnavailable:
        raise
    except TimeoutError:
        raise BrokerUnavailable(f"broker did not answer within {seconds:g} s") from None
    except Exception as e:
        log.warning("broker error: %s: %s", type(e).__name__, e)
        raise BrokerUnavailable(f"broker error: {type(e).__name__}") from e


def mask_account(account: str) -> str:
    """``123456785678`` -> ``1234****5678``: a third of the digits shown at each end, for logs."""
    keep = len(account) // 3
    if keep == 0:
        return "*" * len(account)
    return f"{account[:keep]}{'*' * (len(account) - 2 * keep)}{account[-keep:]}"


def check_order_shape(side: Side, price: Decimal, qty: int) -> RejectReason | None:
    """The account-independent rules: buy lots of 100, 0.01 tick (limits need the instrument)."""
    if side not in SIDES:
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    if qty <= 0 or (side == "buy" and qty % LOT):
        return RejectReason.LOT_SIZE
    if price <= 0 or price != price.quantize(TICK):
        return RejectReason.PRICE_TICK
    return None
