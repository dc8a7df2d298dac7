"""The brokerage back ends: SimBroker rules, the timeout guard, HttpBroker over loopback, seeding, CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from softswitch.cli import main
from softswitch.config import ConfigError, load_config
from softswitch.trading import (
    INSTRUMENTS,
    AuthOutcome,
    BrokerUnavailable,
    HttpBroker,
    OrderStatus,
    PriceSimulator,
    RejectReason,
    SimBroker,
    make_broker,
    mask_account,
    seed_demo,
    with_timeout,
)
from softswitch.trading.http import to_json
from softswitch.trading.sim import market_open

D = Decimal
T0 = 1_763_000_000.0
NORMAL, NORMAL_PIN = "10000001", "123456"
VIP, VIP_PIN = "10000002", "654321"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "broker.sqlite"
    seed_demo(path)
    return path


@pytest.fixture
async def broker(db: Path) -> AsyncIterator[SimBroker]:
    b = SimBroker(db, clock=lambda: T0)
    yield b
    b.close()


# --- helpers ---------------------------------------------------------------------------------


def test_mask_account() -> None:
    assert mask_account("123456785678") == "1234****5678"
    assert mask_account("10000001") == "10****01"
    assert mask_account("12") == "**"


def test_auth_outcomes_have_no_unknown_account() -> None:
    assert [o.value for o in AuthOutcome] == ["ok", "wrong_pin", "locked"]


async def test_with_timeout_slow_and_failing() -> None:
    with pytest.raises(BrokerUnavailable):
        await with_timeout(asyncio.sleep(1), 0.05)

    async def boom() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(BrokerUnavailable) as info:
        await with_timeout(boom(), 1)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert await with_timeout(asyncio.sleep(0, "x"), 1) == "x"


async def test_slow_backend_raises_broker_unavailable(db: Path) -> None:
    class SlowSim(SimBroker):
        def _balance(self, account: str) -> Any:
            threading.Event().wait(0.5)
            return super()._balance(account)

    b = SlowSim(db, timeout=0.05)
    try:
        with pytest.raises(BrokerUnavailable):
            await b.balance(NORMAL)
    finally:
        await asyncio.sleep(0.5)  # let the worker thread finish before closing
        b.close()


async def test_backend_error_raises_broker_unavailable(db: Path) -> None:
    b = SimBroker(db)
    b.close()  # any later query fails with sqlite3.ProgrammingError
    with pytest.raises(BrokerUnavailable):
        await b.positions(NORMAL)


# --- authentication --------------------------------------------------------------------------


async def test_authenticate(broker: SimBroker) -> None:
    assert await broker.authenticate(NORMAL, NORMAL_PIN) is AuthOutcome.OK
    assert await broker.authenticate(VIP, VIP_PIN) is AuthOutcome.OK
    wrong = await broker.authenticate(NORMAL, "000000")
    unknown = await broker.authenticate("99999999", NORMAL_PIN)
    assert wrong is unknown is AuthOutcome.WRONG_PIN
    assert await broker.authenticate(NORMAL, "") is AuthOutcome.WRONG_PIN
    assert await broker.tier(NORMAL) == "normal"
    assert await broker.tier(VIP) == "vip"


async def test_lockout_looks_the_same_for_unknown_accounts(db: Path) -> None:
    b = SimBroker(db, max_pin_failures=3)
    try:
        known = [await b.authenticate(NORMAL, "1") for _ in range(4)]
        unknown = [await b.authenticate("99999999", "1") for _ in range(4)]
        assert known == unknown == [AuthOutcome.WRONG_PIN] * 2 + [AuthOutcome.LOCKED] * 2
        assert await b.authenticate(NORMAL, NORMAL_PIN) is AuthOutcome.LOCKED
        b.unlock(NORMAL)
        assert await b.authenticate(NORMAL, NORMAL_PIN) is AuthOutcome.OK
        # a success resets the counter
        assert await b.authenticate(NORMAL, "1") is AuthOutcome.WRONG_PIN
        assert await b.authenticate(NORMAL, NORMAL_PIN) is AuthOutcome.OK
        assert [await b.authenticate(NORMAL, "1") for _ in range(2)] == [AuthOutcome.WRONG_PIN] * 2
    finally:
        b.close()


def test_pin_not_stored_in_clear(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
        hashes = [r[0] for r in conn.execute("SELECT pin_hash FROM accounts")]
    assert NORMAL_PIN not in dump and VIP_PIN not in dump
    assert len(hashes) == 2 and all(h.startswith("scrypt$") for h in hashes)
    assert hashes[0].split("$")[4] != hashes[1].split("$")[4]  # salted


async def test_pin_and_account_never_logged(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    b = SimBroker(db, max_pin_failures=2)
    try:
        for _ in range(3):
            await b.authenticate(NORMAL, "424242")
        b.unlock(NORMAL)
        assert (await b.place_order(NORMAL, "buy", "000001", D("11.45"), 100)).accepted
    finally:
        b.close()
    assert "locked" in caplog.text and "order" in caplog.text
    assert "424242" not in caplog.text and NORMAL not in caplog.text


# --- quotes ----------------------------------------------------------------------------------


async def test_quote(broker: SimBroker) -> None:
    q = await broker.quote("600519")
    assert q is not None
    assert (q.code, q.name, q.name_en, q.prev_close) == (
        "600519",
        "贵州茅台",
        "Kweichow Moutai",
        D("1528.00"),
    )
    assert q.change == q.price - q.prev_close
    assert q.change_pct == (q.change * 100 / q.prev_close).quantize(D("0.01"))
    assert await broker.quote("999999") is None
    for code in ("601318", "600036", "000001", "000858"):
        assert await broker.quote(code) is not None
    assert len(INSTRUMENTS) >= 20


def test_price_simulator_deterministic_and_in_band() -> None:
    a, b, c = PriceSimulator(7), PriceSimulator(7), PriceSimulator(8)
    moutai = INSTRUMENTS["600519"]
    times = [T0 + 37 * i for i in range(2000)]
    assert [a.price(moutai, t) for t in times] == [b.price(moutai, t) for t in times]
    assert [a.price(moutai, t) for t in times] != [c.price(moutai, t) for t in times]
    for inst in INSTRUMENTS.values():
        for t in times[::50]:
            p = a.price(inst, t)
            assert inst.limit_down <= p <= inst.limit_up
            assert p == p.quantize(D("0.01"))
    assert len({a.price(moutai, t) for t in times}) > 50  # it moves


# --- orders ----------------------------------------------------------------------------------


async def test_buy_reserves_cash_and_cancel_releases(broker: SimBroker) -> None:
    before = await broker.balance(NORMAL)
    assert (before.cash, before.available, before.currency) == (D("100000.00"), D("100000.00"), "CNY")
    r = await broker.place_order(NORMAL, "buy", "600036", D("39.80"), 1000)
    assert r.accepted and r.order_id and r.reason is None
    after = await broker.balance(NORMAL)
    assert after.cash == D("100000.00") and after.available == D("60200.00")
    [order] = await broker.open_orders(NORMAL)
    assert (order.order_id, order.side, order.code, order.name) == (r.order_id, "buy", "600036", "招商银行")
    assert (order.price, order.qty, order.status, order.created) == (D("39.80"), 1000, OrderStatus.OPEN, T0)
    assert await broker.open_orders(VIP) == []
    assert not await broker.cancel_order(VIP, r.order_id)  # someone else's order
    assert await broker.cancel_order(NORMAL, r.order_id)
    assert not await broker.cancel_order(NORMAL, r.order_id)  # already cancelled
    assert not await broker.cancel_order(NORMAL, "12345")
    assert not await broker.cancel_order(NORMAL, "x;1")
    assert await broker.open_orders(NORMAL) == []
    assert (await broker.balance(NORMAL)).available == D("100000.00")


async def test_insufficient_cash(broker: SimBroker) -> None:
    # 100 Moutai at the limit-down price is still more than 100,000
    r = await broker.place_order(NORMAL, "buy", "600519", D("1375.20"), 100)
    assert (r.accepted, r.order_id, r.reason) == (False, None, RejectReason.INSUFFICIENT_CASH)
    # open buys count against the cash: 60,000 + 39,900 fits, then another 200 does not
    assert (await broker.place_order(NORMAL, "buy", "601318", D("50.00"), 1200)).accepted
    assert (await broker.place_order(NORMAL, "buy", "000001", D("11.00"), 3600)).accepted  # 39,600
    r = await broker.place_order(NORMAL, "buy", "000001", D("11.00"), 100)
    assert r.reason is RejectReason.INSUFFICIENT_CASH
    assert (await broker.balance(NORMAL)).available == D("400.00")
    assert (await broker.place_order("99999999", "buy", "000001", D("11.00"), 100)).reason is (
        RejectReason.UNKNOWN_ACCOUNT
    )


async def test_sell_reserves_position(broker: SimBroker) -> None:
    pos = {p.code: p for p in await broker.positions(NORMAL)}
    assert set(pos) == {"600519", "600036", "000001"}
    cmb = pos["600036"]
    assert (cmb.name, cmb.qty, cmb.available_qty, cmb.cost) == ("招商银行", 1000, 1000, D("35.20"))
    assert INSTRUMENTS["600036"].limit_down <= cmb.price <= INSTRUMENTS["600036"].limit_up
    assert (await broker.place_order(NORMAL, "sell", "600036", D("40.00"), 600)).accepted
    r = await broker.place_order(NORMAL, "sell", "600036", D("40.00"), 500)
    assert r.reason is RejectReason.INSUFFICIENT_POSITION
    pos = {p.code: p for p in await broker.positions(NORMAL)}
    assert (pos["600036"].qty, pos["600036"].available_qty) == (1000, 400)
    assert (await broker.balance(NORMAL)).available == D("100000.00")  # sells reserve no cash
    r = await broker.place_order(NORMAL, "sell", "601318", D("50.00"), 100)  # not held
    assert r.reason is RejectReason.INSUFFICIENT_POSITION


async def test_lot_size(broker: SimBroker) -> None:
    for qty in (150, 99, 0, -100):
        r = await broker.place_order(NORMAL, "buy", "000001", D("11.45"), qty)
        assert r.reason is RejectReason.LOT_SIZE, qty
    # 550 held: selling 50 or 250 leaves an odd lot behind; all 550, or 500, is fine
    assert (
        await broker.place_order(NORMAL, "sell", "000001", D("11.45"), 50)
    ).reason is RejectReason.LOT_SIZE
    assert (
        await broker.place_order(NORMAL, "sell", "000001", D("11.45"), 250)
    ).reason is RejectReason.LOT_SIZE
    r = await broker.place_order(NORMAL, "sell", "000001", D("11.45"), 550)
    assert r.accepted and r.order_id
    assert await broker.cancel_order(NORMAL, r.order_id)
    assert (await broker.place_order(NORMAL, "sell", "000001", D("11.45"), 500)).accepted
    # the odd remainder of 50 may now be sold on its own
    assert (await broker.place_order(NORMAL, "sell", "000001", D("11.45"), 50)).accepted


async def test_price_tick(broker: SimBroker) -> None:
    for price in ("11.455", "11.4501", "0", "-1.00"):
        r = await broker.place_order(NORMAL, "buy", "000001", D(price), 100)
        assert r.reason is RejectReason.PRICE_TICK, price
    assert (await broker.place_order(NORMAL, "buy", "000001", D("11.5"), 100)).accepted


async def test_price_limits(broker: SimBroker) -> None:
    # 000001 closed at 11.45: the band is 10.31 (10.305 rounded half up) .. 12.60 (12.595)
    inst = INSTRUMENTS["000001"]
    assert (inst.limit_down, inst.limit_up) == (D("10.31"), D("12.60"))
    for price, ok in (("12.60", True), ("12.61", False), ("10.31", True), ("10.30", False)):
        r = await broker.place_order(NORMAL, "buy", "000001", D(price), 100)
        assert r.accepted is ok and (ok or r.reason is RejectReason.PRICE_LIMIT), price
    r = await broker.place_order(NORMAL, "sell", "600036", D("43.81"), 100)  # 39.82 * 1.1 = 43.802
    assert r.reason is RejectReason.PRICE_LIMIT


async def test_unknown_code_bad_side_and_market_hours(db: Path, broker: SimBroker) -> None:
    assert (await broker.place_order(NORMAL, "buy", "123456", D("10.00"), 100)).reason is (
        RejectReason.UNKNOWN_CODE
    )
    with pytest.raises(ValueError):
        await broker.place_order(NORMAL, "short", "000001", D("11.45"), 100)  # type: ignore[arg-type]
    saturday = 1_763_164_800.0 + 3 * 3600  # 2025-11-15 11:00 China time, a Saturday
    monday_10am = 1_763_344_800.0  # 2025-11-17 10:00 China time
    assert market_open(monday_10am) and market_open(monday_10am + 86400)
    assert market_open(monday_10am + 3.5 * 3600)  # 13:30
    assert not market_open(saturday)
    assert not market_open(monday_10am - 3600)  # 09:00, before the open
    assert not market_open(monday_10am + 2 * 3600)  # 12:00 lunch break
    assert not market_open(monday_10am + 6 * 3600)  # 16:00
    assert (await broker.place_order(NORMAL, "buy", "000001", D("11.45"), 100)).accepted  # off by default
    b = SimBroker(db, clock=lambda: saturday, enforce_hours=True)
    try:
        r = await b.place_order(NORMAL, "buy", "000001", D("11.45"), 100)
        assert r.reason is RejectReason.MARKET_CLOSED
    finally:
        b.close()


async def test_concurrent_buys_never_overspend(db: Path) -> None:
    b = SimBroker(db)
    try:
        results = await asyncio.gather(
            *(b.place_order(NORMAL, "buy", "600036", D("39.00"), 300) for _ in range(12))
        )  # 11,700 each: only 8 fit in 100,000
        assert sum(r.accepted for r in results) == 8
        assert (await b.balance(NORMAL)).available == D("6400.00")
    finally:
        b.close()


# --- seeding and config ----------------------------------------------------------------------


def test_seed_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "b.sqlite"
    assert seed_demo(path) == [(NORMAL, NORMAL_PIN), (VIP, VIP_PIN)]
    assert seed_demo(path) == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM positions").fetchone() == (6,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def write_config(tmp_path: Path, trading: str = "") -> Path:
    path = tmp_path / "switch.toml"
    path.write_text(
        f'[switch]\ndomain = "a.example"\ndata_dir = "var"\n[accounts.1]\npassword = "p"\n{trading}'
    )
    return path


def test_make_broker(tmp_path: Path) -> None:
    sim = make_broker(load_config(write_config(tmp_path)))
    assert isinstance(sim, SimBroker) and sim.db_path == tmp_path / "var" / "broker.sqlite"
    sim.close()
    cfg = write_config(
        tmp_path, '[trading]\nbackend = "http"\nurl = "http://127.0.0.1:9/api"\ntimeout = 1.5\n'
    )
    http = make_broker(load_config(cfg))
    assert isinstance(http, HttpBroker) and (http.url, http.timeout) == ("http://127.0.0.1:9/api", 1.5)
    bad = write_config(tmp_path, '[trading]\nbackend = "ftp"\nurl = 5\ntimeout = 0\ncolour = "red"\n')
    with pytest.raises(ConfigError) as info:
        make_broker(load_config(bad))
    text = str(info.value)
    for key in ("trading.backend", "trading.url", "trading.timeout", "trading.colour"):
        assert key in text
    with pytest.raises(ConfigError, match="required"):
        make_broker(load_config(write_config(tmp_path, '[trading]\nbackend = "http"\n')))


def test_cli_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    assert main(["broker", "seed", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "2 demo accounts created" in out[0] and str(tmp_path / "var" / "broker.sqlite") in out[0]
    assert out[2].split() == [NORMAL, NORMAL_PIN, "normal", "100,000.00"]
    assert out[3].split() == [VIP, VIP_PIN, "vip", "5,000,000.00"]
    assert main(["broker", "seed", "-c", str(cfg)]) == 0
    out2 = capsys.readouterr().out
    assert "already present" in out2 and NORMAL_PIN not in out2
    http = write_config(tmp_path, '[trading]\nbackend = "http"\nurl = "http://127.0.0.1:9/"\n')
    assert main(["broker", "seed", "-c", str(http)]) == 1
    assert 'only "sim"' in capsys.readouterr().err


# --- HttpBroker against a loopback server backed by a SimBroker -------------------------------


def make_server(sim: SimBroker, loop: asyncio.AbstractEventLoop) -> ThreadingHTTPServer:
    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(5)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def route(self, method: str) -> None:
            parts = [unquote(p) for p in self.path.strip("/").split("/")]
            length = int(self.headers.get("Content-Length") or 0)
            body: Any = json.loads(self.rfile.read(length)) if length else None
            match method, parts:
                case "POST", ["auth"]:
                    self.reply(200, {"outcome": run(sim.authenticate(body["account"], body["pin"])).value})
                case "GET", ["quote", code]:
                    q = run(sim.quote(code))
                    self.reply(404, {}) if q is None else self.reply(200, to_json(q))
                case "GET", ["accounts", a, "tier"]:
                    self.reply(200, {"tier": run(sim.tier(a))})
                case "GET", ["accounts", a, "balance"]:
                    self.reply(200, to_json(run(sim.balance(a))))
                case "GET", ["accounts", a, "positions"]:
                    self.reply(200, [to_json(p) for p in run(sim.positions(a))])
                case "POST", ["accounts", a, "orders"]:
                    r = run(sim.place_order(a, body["side"], body["code"], D(body["price"]), body["qty"]))
                    self.reply(200, to_json(r))
                case "GET", ["accounts", a, "orders"]:
                    self.reply(200, [to_json(o) for o in run(sim.open_orders(a))])
                case "DELETE", ["accounts", a, "orders", oid]:
                    self.reply(200, {"cancelled": run(sim.cancel_order(a, oid))})
                case "GET", ["boom", *_]:
                    self.reply(500, {})
                case "GET", ["garbage", *_]:
                    self.reply(200, {"nonsense": 1})
                case _:
                    self.reply(404, {})

        def do_GET(self) -> None:
            self.route("GET")

        def do_POST(self) -> None:
            self.route("POST")

        def do_DELETE(self) -> None:
            self.route("DELETE")

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
async def http_server(broker: SimBroker) -> AsyncIterator[str]:
    server = make_server(broker, asyncio.get_running_loop())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()


async def test_http_round_trip(http_server: str, broker: SimBroker) -> None:
    h = HttpBroker(http_server + "/", timeout=5)
    assert await h.authenticate(NORMAL, NORMAL_PIN) is AuthOutcome.OK
    assert (
        await h.authenticate(NORMAL, "9") is await h.authenticate("nobody/..", "9") is AuthOutcome.WRONG_PIN
    )
    assert await h.tier(VIP) == "vip"
    assert await h.quote("600519") == await broker.quote("600519")
    assert await h.quote("999999") is None
    assert await h.balance(NORMAL) == await broker.balance(NORMAL)
    assert await h.positions(NORMAL) == await broker.positions(NORMAL)
    r = await h.place_order(NORMAL, "buy", "601318", D("51.36"), 100)
    assert r.accepted and r.order_id
    rejected = await h.place_order(NORMAL, "buy", "601318", D("51.365"), 100)
    assert (rejected.accepted, rejected.order_id, rejected.reason) == (False, None, RejectReason.PRICE_TICK)
    orders = await h.open_orders(NORMAL)
    assert orders == await broker.open_orders(NORMAL) and orders[0].price == D("51.36")
    assert (await h.balance(NORMAL)).available == D("94864.00")
    assert await h.cancel_order(NORMAL, r.order_id)
    assert not await h.cancel_order(NORMAL, r.order_id)
    assert await h.open_orders(NORMAL) == []


async def test_http_failures_raise_broker_unavailable(http_server: str) -> None:
    with pytest.raises(BrokerUnavailable):
        await HttpBroker(http_server + "/boom").balance(NORMAL)  # 500
    with pytest.raises(BrokerUnavailable):
        await HttpBroker(http_server + "/garbage").balance(NORMAL)  # 200 with the wrong shape
    with pytest.raises(BrokerUnavailable):
        await HttpBroker("http://127.0.0.1:1", timeout=1).quote("600519")  # connection refused
    with pytest.raises(ValueError):
        HttpBroker("ftp://example.com")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


async def test_http_timeout(silent_server: str) -> None:
    h = HttpBroker(silent_server, timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(BrokerUnavailable):
        await h.authenticate(NORMAL, NORMAL_PIN)
    assert loop.time() - start < 1.0
