"""SimBroker: a self-contained brokerage on SQLite (WAL) for demos and tests.

Accounts carry a salted scrypt PIN hash, a tier and cash (in fen, integer); orders stay open until
cancelled (no matching engine). Open buys reserve cash, open sells reserve shares. SQLite work runs
in a worker thread so the event loop never waits on the disk. PINs are never stored or logged in
clear; account numbers are logged masked.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast

from .base import (
    AuthOutcome,
    Balance,
    Order,
    OrderResult,
    OrderStatus,
    Position,
    Quote,
    RejectReason,
    Side,
    check_order_shape,
    mask_account,
    with_timeout,
)
from .instruments import INSTRUMENTS, Instrument, PriceSimulator

log = logging.getLogger("softswitch.trading.sim")
T = TypeVar("T")

TIERS = ("vip", "normal")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY, pin_hash TEXT NOT NULL, tier TEXT NOT NULL, cash_fen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    account TEXT NOT NULL, code TEXT NOT NULL, qty INTEGER NOT NULL, cost TEXT NOT NULL,
    PRIMARY KEY (account, code)
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, side TEXT NOT NULL, code TEXT NOT NULL,
    price_fen INTEGER NOT NULL, qty INTEGER NOT NULL, status TEXT NOT NULL, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_account ON orders (account, status);
CREATE TABLE IF NOT EXISTS auth_failures (account TEXT PRIMARY KEY, failures INTEGER NOT NULL);
"""


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex), with a fresh 16-byte salt unless one is given."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


_dummy_hash: str | None = None


def _dummy() -> str:
    """A hash to verify against for unknown accounts, so they cost the same time as known ones."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_pin(secrets.token_hex(8))
    return _dummy_hash


def to_fen(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def from_fen(fen: int) -> Decimal:
    return Decimal(fen).scaleb(-2)


def market_open(ts: float) -> bool:
    """Shanghai/Shenzhen continuous trading: weekdays 09:30-11:30 and 13:00-15:00 China time (no holidays)."""
    local = ts + 8 * 3600
    weekday = (int(local // 86400) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    minute = int(local % 86400) // 60
    return weekday < 5 and (570 <= minute < 690 or 780 <= minute < 900)


class SimBroker:
    """The :class:`~softswitch.trading.base.Broker` protocol over a local SQLite file."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        timeout: float = 3.0,
        enforce_hours: bool = False,
        max_pin_failures: int = 5,
        instruments: Mapping[str, Instrument] = INSTRUMENTS,
    ) -> None:
        self.db_path = Path(db_path)
        self.clock = clock
        self.timeout = timeout
        self.enforce_hours = enforce_hours
        self.max_pin_failures = max_pin_failures
        self.instruments = instruments
        self.prices = PriceSimulator(seed, clock)
        self._lock = threading.Lock()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await with_timeout(asyncio.to_thread(fn, *args), self.timeout)

    # --- admin (synchronous; for seeding and tools) -------------------------------------------

    def create_account(
        self, account: str, pin: str, *, tier: str = "normal", cash: Decimal = Decimal(0),
        positions: Mapping[str, tuple[int, Decimal]] | None = None,
    ) -> bool:  # fmt: skip
        """Add an account (positions: code -> (qty, cost)); False if it already exists."""
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
        if not pin:
            raise ValueError("empty PIN")
        pin_hash = hash_pin(pin)
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO accounts VALUES (?, ?, ?, ?)", (account, pin_hash, tier, to_fen(cash))
            )
            if cur.rowcount != 1:
                return False
            for code, (qty, cost) in (positions or {}).items():
                db.execute("INSERT INTO positions VALUES (?, ?, ?, ?)", (account, code, qty, str(cost)))
        log.info("created %s account %s", tier, mask_account(account))
        return True

    def unlock(self, account: str) -> None:
        """Clear the failed-PIN counter of ``account``."""
        with self._tx() as db:
            db.execute("DELETE FROM auth_failures WHERE account = ?", (account,))

    # --- the Broker protocol ---------------------------------------------------------------------

    async def authenticate(self, account: str, pin: str) -> AuthOutcome:
        return await self._run(self._authenticate, account, pin)

    def _authenticate(self, account: str, pin: str) -> AuthOutcome:
        rows = self._query(
            "SELECT (SELECT pin_hash FROM accounts WHERE account = ?),"
            " (SELECT failures FROM auth_failures WHERE account = ?)",
            (account, account),
        )
        stored, failures = rows[0]
        # Hash even when the account is unknown or locked, so all outcomes take the same time.
        good = verify_pin(pin, stored if stored is not None else _dummy()) and stored is not None
        failures = failures or 0
        if failures >= self.max_pin_failures:
            return AuthOutcome.LOCKED
        if good:
            if failures:
                self.unlock(account)
            return AuthOutcome.OK
        # Unknown accounts count failures too: "locked" must not reveal that an account exists.
        with self._tx() as db:
            db.execute(
                "INSERT INTO auth_failures VALUES (?, 1)"
                " ON CONFLICT (account) DO UPDATE SET failures = failures + 1",
                (account,),
            )
        if failures + 1 >= self.max_pin_failures:
            log.warning("account %s locked after %d wrong PINs", mask_account(account), failures + 1)
            return AuthOutcome.LOCKED
        return AuthOutcome.WRONG_PIN

    async def tier(self, account: str) -> str:
        rows = await self._run(self._query, "SELECT tier FROM accounts WHERE account = ?", (account,))
        return cast(str, rows[0][0]) if rows else "normal"

    async def quote(self, code: str) -> Quote | None:
        inst = self.instruments.get(code)
        return self.prices.quote(inst) if inst else None

    async def balance(self, account: str) -> Balance:
        return await self._run(self._balance, account)

    def _balance(self, account: str) -> Balance:
        rows = self._query(
            "SELECT cash_fen, (SELECT coalesce(sum(price_fen * qty), 0) FROM orders"
            " WHERE account = ? AND status = 'open' AND side = 'buy') FROM accounts WHERE account = ?",
            (account, account),
        )
        if not rows:
            return Balance(Decimal("0.00"), Decimal("0.00"))
        cash, reserved = rows[0]
        return Balance(from_fen(cash), from_fen(cash - reserved))

    async def positions(self, account: str) -> list[Position]:
        return await self._run(self._positions, account)

    def _positions(self, account: str) -> list[Position]:
        rows = self._query(
            "SELECT p.code, p.qty, p.cost, (SELECT coalesce(sum(o.qty), 0) FROM orders o WHERE o.account = p.account"
            " AND o.code = p.code AND o.status = 'open' AND o.side = 'sell')"
            " FROM positions p WHERE p.account = ? AND p.qty > 0 ORDER BY p.code",
            (account,),
        )
        out = []
        for code, qty, cost, reserved in rows:
            inst = self.instruments.get(code)
            price = self.prices.price(inst) if inst else Decimal(cost)
            out.append(Position(code, inst.name if inst else code, qty, qty - reserved, Decimal(cost), price))
        return out

    async def place_order(self, account: str, side: Side, code: str, price: Decimal, qty: int) -> OrderResult:
        inst = self.instruments.get(code)
        if inst is None:
            return OrderResult.rejected(RejectReason.UNKNOWN_CODE)
        if self.enforce_hours and not market_open(self.clock()):
            return OrderResult.rejected(RejectReason.MARKET_CLOSED)
        reason = check_order_shape(side, price, qty)
        if reason is None and not inst.limit_down <= price <= inst.limit_up:
            reason = RejectReason.PRICE_LIMIT
        if reason is not None:
            return OrderResult.rejected(reason)
        return await self._run(self._place, account, side, inst, to_fen(price), qty)

    def _place(self, account: str, side: Side, inst: Instrument, price_fen: int, qty: int) -> OrderResult:
        with self._tx() as db:
            row = db.execute("SELECT cash_fen FROM accounts WHERE account = ?", (account,)).fetchone()
            if row is None:
                return OrderResult.rejected(RejectReason.UNKNOWN_ACCOUNT)
            (reserved,) = db.execute(
                "SELECT coalesce(sum(CASE side WHEN 'buy' THEN price_fen * qty ELSE qty END), 0) FROM orders"
                " WHERE account = ? AND status = 'open' AND side = ? AND (side = 'buy' OR code = ?)",
                (account, side, inst.code),
            ).fetchone()
            if side == "buy":
                if price_fen * qty > row[0] - reserved:
                    return OrderResult.rejected(RejectReason.INSUFFICIENT_CASH)
            else:
                held = db.execute(
                    "SELECT qty FROM positions WHERE account = ? AND code = ?", (account, inst.code)
                ).fetchone()
                available = (held[0] if held else 0) - reserved
                if qty > available:
                    return OrderResult.rejected(RejectReason.INSUFFICIENT_POSITION)
                if qty % 100 and qty != available:  # an odd lot may only be sold as the whole remainder
                    return OrderResult.rejected(RejectReason.LOT_SIZE)
            cur = db.execute(
                "INSERT INTO orders (account, side, code, price_fen, qty, status, created)"
                " VALUES (?, ?, ?, ?, ?, 'open', ?)",
                (account, side, inst.code, price_fen, qty, self.clock()),
            )
            order_id = str(cur.lastrowid)
        log.info(
            "order %s: %s %s %d @ %s for %s", order_id, side, inst.code, qty, from_fen(price_fen),
            mask_account(account),
        )  # fmt: skip
        return OrderResult.ok(order_id)

    async def open_orders(self, account: str) -> list[Order]:
        rows = await self._run(
            self._query,
            "SELECT id, side, code, price_fen, qty, status, created FROM orders"
            " WHERE account = ? AND status = 'open' ORDER BY id",
            (account,),
        )
        out = []
        for oid, side, code, price_fen, qty, status, created in rows:
            inst = self.instruments.get(code)
            name = inst.name if inst else code
            out.append(
                Order(str(oid), side, code, name, from_fen(price_fen), qty, OrderStatus(status), created)
            )
        return out

    async def cancel_order(self, account: str, order_id: str) -> bool:
        if not order_id.isdigit():
            return False
        return await self._run(self._cancel, account, int(order_id))

    def _cancel(self, account: str, oid: int) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE orders SET status = 'cancelled' WHERE id = ? AND account = ? AND status = 'open'",
                (oid, account),
            )
            return cur.rowcount == 1


@dataclass(frozen=True, slots=True)
class DemoAccount:
    account: str
    pin: str
    tier: str
    cash: Decimal
    positions: dict[str, tuple[int, Decimal]] = field(default_factory=dict)


DEMO_ACCOUNTS = (
    DemoAccount(
        "10000001", "123456", "normal", Decimal("100000.00"),
        {"600519": (100, Decimal("1620.00")), "600036": (1000, Decimal("35.20")), "000001": (550, Decimal("12.10"))},
    ),
    DemoAccount(
        "10000002", "654321", "vip", Decimal("5000000.00"),
        {"601318": (5000, Decimal("48.50")), "000858": (300, Decimal("140.00")), "600900": (2000, Decimal("24.30"))},
    ),
)  # fmt: skip


def seed_demo(db_path: str | Path) -> list[tuple[str, str]]:
    """Create the demo accounts that are missing; returns the (account, PIN) pairs created."""
    broker = SimBroker(db_path)
    try:
        return [
            (d.account, d.pin)
            for d in DEMO_ACCOUNTS
            if broker.create_account(d.account, d.pin, tier=d.tier, cash=d.cash, positions=d.positions)
        ]
    finally:
        broker.close()
