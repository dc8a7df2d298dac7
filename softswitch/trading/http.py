"""HttpBroker: the Broker protocol over JSON/HTTP (stdlib urllib, run in a worker thread).

Endpoints, relative to the base URL (account numbers and order ids percent-encoded; prices are
decimal strings such as ``"1528.00"``; every reply is a JSON object or list, UTF-8)::

    POST   /auth                          {"account", "pin"}             -> {"outcome": "ok"|"wrong_pin"|"locked"}
    GET    /accounts/{a}/tier                                            -> {"tier": "vip"|"normal"}
    GET    /quote/{code}                                                 -> {"code", "name", "name_en", "prev_close",
                                                                             "price", "change", "change_pct"}; 404 if unknown
    GET    /accounts/{a}/balance                                         -> {"cash", "available", "currency"}
    GET    /accounts/{a}/positions                                       -> [{"code", "name", "qty", "available_qty",
                                                                              "cost", "price"}, ...]
    POST   /accounts/{a}/orders           {"side", "code", "price", "qty"} -> {"accepted", "order_id", "reason"}
    GET    /accounts/{a}/orders                                          -> open orders: [{"order_id", "side", "code",
                                                                              "name", "price", "qty", "status", "created"}]
    DELETE /accounts/{a}/orders/{id}                                     -> {"cancelled": true|false}

Any other status, a malformed reply, a connection error or a timeout raises BrokerUnavailable.
The PIN travels in a POST body: use an https:// URL outside a lab.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from .base import (
    AuthOutcome,
    Balance,
    BrokerUnavailable,
    Order,
    OrderResult,
    OrderStatus,
    Position,
    Quote,
    RejectReason,
    Side,
    check_order_shape,
    with_timeout,
)

_DECIMALS = {"prev_close", "price", "change", "change_pct", "cash", "available", "cost"}


def to_json(value: Quote | Balance | Position | Order | OrderResult) -> dict[str, Any]:
    """A value type as a JSON-ready dict: Decimals as strings, enums as their values."""
    out = asdict(value)
    for k, v in out.items():
        if isinstance(v, Decimal):
            out[k] = str(v)
        elif isinstance(v, OrderStatus | RejectReason):
            out[k] = v.value
    return out


def _fields(d: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: Decimal(str(d[k])) if k in _DECIMALS else d[k] for k in names}


def quote_from_json(d: dict[str, Any]) -> Quote:
    return Quote(**_fields(d, Quote.__match_args__))


def balance_from_json(d: dict[str, Any]) -> Balance:
    return Balance(**_fields(d, Balance.__match_args__))


def position_from_json(d: dict[str, Any]) -> Position:
    return Position(**_fields(d, Position.__match_args__))


def order_from_json(d: dict[str, Any]) -> Order:
    f = _fields(d, Order.__match_args__)
    f["status"] = OrderStatus(f["status"])
    return Order(**f)


def result_from_json(d: dict[str, Any]) -> OrderResult:
    reason = d.get("reason")
    order_id = d.get("order_id")
    return OrderResult(
        bool(d["accepted"]),
        None if order_id is None else str(order_id),
        None if reason is None else RejectReason(reason),
    )


def _seg(text: str) -> str:
    return urllib.parse.quote(text, safe="")


class HttpBroker:
    """The :class:`~softswitch.trading.base.Broker` protocol against a remote JSON/HTTP service."""

    def __init__(self, url: str, *, timeout: float = 3.0, headers: dict[str, str] | None = None) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Accept": "application/json", **(headers or {})}

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(self.headers))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            e.close()
            return e.code, None

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, none_on_404: bool = False
    ) -> Any:
        status, reply = await with_timeout(asyncio.to_thread(self._request, method, path, body), self.timeout)
        if status == 404 and none_on_404:
            return None
        if status != 200 or reply is None:
            # The path may hold an account number: log only the method and status.
            raise BrokerUnavailable(f"broker answered {status} to {method}")
        return reply

    @staticmethod
    def _parse(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (KeyError, TypeError, ValueError, ArithmeticError) as e:
            raise BrokerUnavailable(f"malformed broker reply: {type(e).__name__}") from e

    async def authenticate(self, account: str, pin: str) -> AuthOutcome:
        reply = await self._call("POST", "/auth", {"account": account, "pin": pin})
        outcome: AuthOutcome = self._parse(lambda r: AuthOutcome(r["outcome"]), reply)
        return outcome

    async def tier(self, account: str) -> str:
        reply = await self._call("GET", f"/accounts/{_seg(account)}/tier")
        tier = reply.get("tier") if isinstance(reply, dict) else None
        return tier if tier in ("vip", "normal") else "normal"

    async def quote(self, code: str) -> Quote | None:
        reply = await self._call("GET", f"/quote/{_seg(code)}", none_on_404=True)
        return None if reply is None else self._parse(quote_from_json, reply)

    async def balance(self, account: str) -> Balance:
        reply = await self._call("GET", f"/accounts/{_seg(account)}/balance")
        balance: Balance = self._parse(balance_from_json, reply)
        return balance

    async def positions(self, account: str) -> list[Position]:
        reply = await self._call("GET", f"/accounts/{_seg(account)}/positions")
        out: list[Position] = self._parse(lambda r: [position_from_json(p) for p in r], reply)
        return out

    async def place_order(self, account: str, side: Side, code: str, price: Decimal, qty: int) -> OrderResult:
        check_order_shape(side, price, qty)  # raises ValueError for a bad side, like SimBroker
        body = {"side": side, "code": code, "price": str(price), "qty": qty}
        reply = await self._call("POST", f"/accounts/{_seg(account)}/orders", body)
        result: OrderResult = self._parse(result_from_json, reply)
        return result

    async def open_orders(self, account: str) -> list[Order]:
        reply = await self._call("GET", f"/accounts/{_seg(account)}/orders")
        out: list[Order] = self._parse(lambda r: [order_from_json(o) for o in r], reply)
        return out

    async def cancel_order(self, account: str, order_id: str) -> bool:
        reply = await self._call("DELETE", f"/accounts/{_seg(account)}/orders/{_seg(order_id)}")
        return bool(reply.get("cancelled")) if isinstance(reply, dict) else False
