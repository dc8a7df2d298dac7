"""Brokerage back ends for the trading IVR: the :class:`Broker` protocol, SimBroker and HttpBroker."""

from .base import (
    AuthOutcome,
    Balance,
    Broker,
    BrokerUnavailable,
    Order,
    OrderResult,
    OrderStatus,
    Position,
    Quote,
    RejectReason,
    Side,
    mask_account,
    with_timeout,
)
from .http import HttpBroker
from .instruments import INSTRUMENTS, Instrument, PriceSimulator
from .settings import TradingSettings, make_broker, trading_settings
from .sim import DEMO_ACCOUNTS, SimBroker, seed_demo

__all__ = [
    "DEMO_ACCOUNTS",
    "INSTRUMENTS",
    "AuthOutcome",
    "Balance",
    "Broker",
    "BrokerUnavailable",
    "HttpBroker",
    "Instrument",
    "Order",
    "OrderResult",
    "OrderStatus",
    "Position",
    "PriceSimulator",
    "Quote",
    "RejectReason",
    "Side",
    "SimBroker",
    "TradingSettings",
    "make_broker",
    "mask_account",
    "seed_demo",
    "trading_settings",
    "with_timeout",
]
