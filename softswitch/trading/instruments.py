"""A-share instruments the simulator knows, and a deterministic, seedable price simulator."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .base import TICK, Quote

LIMIT_PCT = Decimal("0.10")  # main-board daily price limit


@dataclass(frozen=True, slots=True)
class Instrument:
    code: str
    name: str
    name_en: str
    prev_close: Decimal

    @property
    def limit_up(self) -> Decimal:
        return (self.prev_close * (1 + LIMIT_PCT)).quantize(TICK, ROUND_HALF_UP)

    @property
    def limit_down(self) -> Decimal:
        return (self.prev_close * (1 - LIMIT_PCT)).quantize(TICK, ROUND_HALF_UP)


_TABLE = """
600519 贵州茅台 Kweichow Moutai 1528.00
601318 中国平安 Ping An Insurance 51.36
600036 招商银行 China Merchants Bank 39.82
000001 平安银行 Ping An Bank 11.45
000858 五粮液 Wuliangye Yibin 132.50
601398 工商银行 ICBC 7.02
601939 建设银行 China Construction Bank 8.61
601988 中国银行 Bank of China 5.43
600000 浦发银行 SPD Bank 10.28
601166 兴业银行 Industrial Bank 20.15
600030 中信证券 CITIC Securities 27.64
600276 恒瑞医药 Jiangsu Hengrui Medicine 49.87
600900 长江电力 China Yangtze Power 28.93
600887 伊利股份 Yili Group 28.40
600309 万华化学 Wanhua Chemical 74.90
601888 中国中免 China Tourism Group Duty Free 66.20
600028 中国石化 Sinopec 6.08
601857 中国石油 PetroChina 8.35
000333 美的集团 Midea Group 74.88
000651 格力电器 Gree Electric 43.12
000002 万科A China Vanke 7.26
002415 海康威视 Hikvision 29.75
002304 洋河股份 Jiangsu Yanghe 80.16
002594 比亚迪 BYD 276.40
"""


def _parse(table: str) -> dict[str, Instrument]:
    out: dict[str, Instrument] = {}
    for line in table.strip().splitlines():
        code, name, rest = line.split(" ", 2)
        name_en, prev = rest.rsplit(" ", 1)
        out[code] = Instrument(code, name, name_en, Decimal(prev))
    return out


INSTRUMENTS: dict[str, Instrument] = _parse(_TABLE)


class PriceSimulator:
    """Intraday prices as a smooth function of time: a few seeded sine waves per code.

    The same seed and clock reading always give the same price; prices stay inside
    the ±10 % band (within ±9 % of the previous close) and on the 0.01 tick.
    """

    def __init__(self, seed: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.seed = seed
        self.clock = clock
        self._waves: dict[str, list[tuple[float, float, float]]] = {}

    def _waves_for(self, code: str) -> list[tuple[float, float, float]]:
        waves = self._waves.get(code)
        if waves is None:
            rng = random.Random(f"{self.seed}:{code}")
            # (weight, angular frequency in rad/s: periods of 20 min to 6 h, phase); weights sum to 1
            weights = [0.5, 0.3, 0.2]
            waves = [
                (w, 2 * math.pi / rng.uniform(1200.0, 21600.0), rng.uniform(0, 2 * math.pi)) for w in weights
            ]
            self._waves[code] = waves
        return waves

    def price(self, inst: Instrument, now: float | None = None) -> Decimal:
        t = self.clock() if now is None else now
        offset = 0.09 * sum(w * math.sin(f * t + p) for w, f, p in self._waves_for(inst.code))
        price = (inst.prev_close * Decimal(1 + offset)).quantize(TICK, ROUND_HALF_UP)
        return min(max(price, inst.limit_down), inst.limit_up)

    def quote(self, inst: Instrument, now: float | None = None) -> Quote:
        price = self.price(inst, now)
        change = price - inst.prev_close
        pct = (change * 100 / inst.prev_close).quantize(TICK, ROUND_HALF_UP)
        return Quote(inst.code, inst.name, inst.name_en, inst.prev_close, price, change, pct)
