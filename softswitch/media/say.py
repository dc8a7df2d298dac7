"""Numbers, money, prices, digit strings and quantities as prompt-name sequences (zh, en).

Every function returns a list of prompt names (see prompts/<lang>/manifest.toml); the engine plays them
back to back. Chinese rules (documented in prompts/README.md):

- Digits are grouped in sections of four: 万 (10^4), 亿 (10^8), 万亿 (10^12); up to 10^16 - 1.
- One 零 stands for any run of missing digits inside a section or for a section whose leading digit
  is zero (10005 -> 一万零五, 1000100 -> 一百万零一百, 203000 -> 二十万三千); trailing zeros are silent.
- A leading 一十 is said 十 (10 -> 十, 150000 -> 十五万) but not inside (110 -> 一百一十).
- 两 replaces the *leading* 2 when the next word is 千, 万 or 亿 (2000 -> 两千, 20000000 -> 两千万,
  2亿 -> 两亿) and an integer that is exactly 2 before a measure word (两股, 两元, 两角, 两分钟);
  everywhere else 二 (2 -> 二, 200 -> 二百, 12000 -> 一万二千, 2.5 -> 二点五, ordinals 第二).
- Decimals: 点 then one digit each (12.34 -> 十二点三四); negatives start with 负.

English: "twelve thousand three hundred forty five point six seven" (no "and"), up to 10^15 - 1;
0-9 are the digit prompts; negatives start with "minus"; amounts are always "... yuan" (no jiao/fen).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

LANGUAGES = ("zh", "en")
Number = int | str | Decimal
MoneyStyle = Literal["decimal", "yuan_jiao_fen"]
Side = Literal["buy", "sell"]

DIGITS = tuple(f"digit_{d}" for d in range(10))

_ZH_SMALL_UNITS = (None, "unit_shi", "unit_bai", "unit_qian")
_ZH_MAX = 10**16
_EN_TEENS = (
    "num_ten", "num_eleven", "num_twelve", "num_thirteen", "num_fourteen",
    "num_fifteen", "num_sixteen", "num_seventeen", "num_eighteen", "num_nineteen",
)  # fmt: skip
_EN_TENS = (
    None, None, "num_twenty", "num_thirty", "num_forty", "num_fifty",
    "num_sixty", "num_seventy", "num_eighty", "num_ninety",
)  # fmt: skip
_EN_SCALES = (
    (10**12, "num_trillion"),
    (10**9, "num_billion"),
    (10**6, "num_million"),
    (10**3, "num_thousand"),
)
_EN_MAX = 10**15
_SHARE_UNITS = frozenset({"股", "shares", "share", "word_gu", "word_shares"})

ZH_NUMBER_WORDS = frozenset(
    {*DIGITS, "unit_shi", "unit_bai", "unit_qian", "unit_wan", "unit_yi"}
    | {"word_dian", "word_yuan", "word_jiao", "word_fen", "word_gu", "word_fu", "word_ling", "word_liang"}
    | {"word_percent"}
)
EN_NUMBER_WORDS = frozenset(
    {*DIGITS, *_EN_TEENS, *(t for t in _EN_TENS if t), "num_hundred", *(name for _, name in _EN_SCALES)}
    | {"word_point", "word_minus", "word_yuan", "word_percent", "word_shares", "word_share"}
    | {"word_shares_of", "word_share_of"}
)
PHRASE_WORDS = frozenset(
    {
        "quote_up",
        "quote_down",
        "quote_flat",
        "position_holding",
        "order_you_are_buying",
        "order_you_are_selling",
        "order_at_price",
        "queue_position_before",
        "queue_position_after",
        "queue_wait_before",
        "queue_wait_after",
        "queue_wait_after_one",
    }
)


def prompt_names(lang: str) -> frozenset[str]:
    """Every prompt name this module can emit for ``lang`` (``stock_<code>`` names excepted)."""
    _check_lang(lang)
    return (ZH_NUMBER_WORDS if lang == "zh" else EN_NUMBER_WORDS) | PHRASE_WORDS


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unsupported language {lang!r} (expected one of {', '.join(LANGUAGES)})")


def to_decimal(value: Number | float) -> Decimal:
    """Parse ``value`` exactly (floats go through ``repr``); ValueError when not a finite number."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        return Decimal(value)
    else:
        try:
            d = Decimal(value.strip() if isinstance(value, str) else repr(value))
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return d


# -- integers -----------------------------------------------------------------------------------------


def _zh_int(n: int, *, liang: bool = True) -> list[str]:
    """Chinese reading of 0 <= n < 10^16 (see the module docstring for the rules)."""
    if n == 0:
        return ["word_ling"]
    if n >= _ZH_MAX:
        raise ValueError(f"{n} is too large to say in Chinese (limit 10^16 - 1)")
    text = str(n)
    top = len(text) - 1
    sections = [(n // 10 ** (4 * k)) % 10**4 for k in range(4)]
    out: list[str] = []
    prev_place = -1
    for place in range(top, -1, -1):
        d = ord(text[top - place]) - 48
        if d == 0:
            continue
        # Every digit between prev_place and place is 0. They need one 零 unless they are all trailing
        # zeros of the previous digit's section (said by its 万/亿): 203000 -> 二十万三千, 10005 -> 一万零五.
        if prev_place >= 0:
            bottom = prev_place if prev_place // 4 == place // 4 else prev_place // 4 * 4
            if bottom > place + 1:
                out.append("word_ling")
        prev_place = place
        small, section = place % 4, place // 4
        if not (place == top and d == 1 and small == 1):  # 十五, not 一十五, at the start
            out.append(DIGITS[d])
        if small:
            out.append(_ZH_SMALL_UNITS[small])  # type: ignore[arg-type]
        if section and sections[section] % 10**small == 0:  # last non-zero digit of its section
            if section == 1:
                out.append("unit_wan")
            elif section == 2:
                out.append("unit_yi")
            else:  # 万亿: "亿" is said here only when the 亿 section is empty
                out.append("unit_wan")
                if sections[2] == 0:
                    out.append("unit_yi")
    if liang and out[0] == "digit_2" and len(out) > 1 and out[1] in ("unit_qian", "unit_wan", "unit_yi"):
        out[0] = "word_liang"
    return out


def _en_hundreds(n: int) -> list[str]:
    out: list[str] = []
    h, r = divmod(n, 100)
    if h:
        out += [DIGITS[h], "num_hundred"]
    if r >= 20:
        t, u = divmod(r, 10)
        out.append(_EN_TENS[t])  # type: ignore[arg-type]
        if u:
            out.append(DIGITS[u])
    elif r >= 10:
        out.append(_EN_TEENS[r - 10])
    elif r:
        out.append(DIGITS[r])
    return out


def _en_int(n: int) -> list[str]:
    if n == 0:
        return ["digit_0"]
    if n >= _EN_MAX:
        raise ValueError(f"{n} is too large to say in English (limit 10^15 - 1)")
    out: list[str] = []
    for scale, name in _EN_SCALES:
        q, n = divmod(n, scale)
        if q:
            out += [*_en_hundreds(q), name]
    if n:
        out += _en_hundreds(n)
    return out


def _int_names(n: int, lang: str, *, liang: bool = True) -> list[str]:
    return _zh_int(n, liang=liang) if lang == "zh" else _en_int(n)


def _count(n: int, lang: str) -> list[str]:
    """An integer followed by a measure word: exactly 2 is 两 in Chinese."""
    if lang == "zh" and n == 2:
        return ["word_liang"]
    return _int_names(n, lang)


# -- public API ---------------------------------------------------------------------------------------


def say_number(n: Number, lang: str = "zh", *, ordinal: bool = False) -> list[str]:
    """Read a number: ints, or decimal strings/Decimals whose fraction digits are read as given.

    ``say_number("12.50", "zh")`` -> 十二点五零; ``ordinal=True`` keeps 二 before 千/万/亿 (第二千).
    """
    _check_lang(lang)
    d = to_decimal(n)
    text = format(abs(d), "f")
    whole, _, frac = text.partition(".")
    out = ["word_fu" if lang == "zh" else "word_minus"] if d < 0 else []
    out += _int_names(int(whole), lang, liang=not ordinal)
    if frac:
        out.append("word_dian" if lang == "zh" else "word_point")
        out += [DIGITS[ord(c) - 48] for c in frac]
    return out


def say_digits(text: str, lang: str = "zh") -> list[str]:
    """Each digit on its own (codes, account numbers); spaces and dashes are skipped.

    Chinese reads 1 as 一 (not the telephone 幺).
    """
    _check_lang(lang)
    out: list[str] = []
    for c in text:
        if "0" <= c <= "9":
            out.append(DIGITS[ord(c) - 48])
        elif c not in " -":
            raise ValueError(f"not a digit string: {text!r}")
    return out


def _quantize(value: Number | float, places: int) -> Decimal:
    return to_decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _strip_zeros(d: Decimal) -> str:
    """'12.50' -> '12.5', '100.00' -> '100', keeping the sign."""
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def say_money(amount: Number | float, lang: str = "zh", style: MoneyStyle = "decimal") -> list[str]:
    """An amount in yuan, rounded half-up to the fen.

    ``style="decimal"``: 12345.67 -> 一万二千三百四十五点六七元 (trailing zeros dropped: 12.50 -> 十二点五元);
    ``style="yuan_jiao_fen"`` (Chinese only; English always uses the decimal form):
    12345.67 -> 一万二千三百四十五元六角七分, 12.05 -> 十二元零五分, 0.5 -> 五角, 0 -> 零元.
    """
    _check_lang(lang)
    if style not in ("decimal", "yuan_jiao_fen"):
        raise ValueError(f"unknown money style {style!r}")
    d = _quantize(amount, 2)
    if style == "decimal" or lang == "en":
        text = _strip_zeros(d)
        if "." in text:
            return [*say_number(text, lang), "word_yuan"]
        value = int(text)
        sign = ["word_fu" if lang == "zh" else "word_minus"] if value < 0 else []
        return [*sign, *_count(abs(value), lang), "word_yuan"]
    cents = int(abs(d) * 100)
    yuan, rest = divmod(cents, 100)
    jiao, fen = divmod(rest, 10)
    out = ["word_fu"] if d < 0 and cents else []
    if yuan:
        out += [*_count(yuan, "zh"), "word_yuan"]
    if jiao:
        out += [*_count(jiao, "zh"), "word_jiao"]
    if fen:
        if yuan and not jiao:
            out.append("word_ling")
        out += [*_count(fen, "zh"), "word_fen"]
    return out or ["word_ling", "word_yuan"]


def say_price(price: Number | float, lang: str = "zh", decimals: int = 2) -> list[str]:
    """A price, always with ``decimals`` places (rounded half-up): 12.5 -> 十二点五零, 12 -> 十二点零零.

    No currency word: callers append ``word_yuan`` where wanted.
    """
    return say_number(_quantize(price, decimals), lang)


def say_quantity(n: Number, lang: str = "zh", unit: str | None = "股") -> list[str]:
    """A count with its unit: 500 -> 五百股 / "five hundred shares"; 2 -> 两股; 1 -> "one share".

    ``unit`` is "股" (or "shares": the share unit in either language), None for no unit, or any other
    prompt name to append as is.
    """
    _check_lang(lang)
    d = to_decimal(n)
    if d != d.to_integral_value():
        return [*say_number(d, lang), *([] if unit is None else [_unit_name(unit, lang, d)])]
    value = int(d)
    sign = ["word_fu" if lang == "zh" else "word_minus"] if value < 0 else []
    words = _count(abs(value), lang) if unit is not None else _int_names(abs(value), lang)
    return [*sign, *words, *([] if unit is None else [_unit_name(unit, lang, d)])]


def _unit_name(unit: str, lang: str, d: Decimal) -> str:
    if unit in _SHARE_UNITS:
        if lang == "zh":
            return "word_gu"
        return "word_share" if abs(d) == 1 else "word_shares"
    return unit


def say_percent(value: Number | float, lang: str = "zh", decimals: int = 2) -> list[str]:
    """A percentage rounded to ``decimals`` places, trailing zeros dropped: 1.20 -> 百分之一点二 /
    "one point two percent"."""
    _check_lang(lang)
    number = say_number(_strip_zeros(_quantize(value, decimals)), lang)
    return ["word_percent", *number] if lang == "zh" else [*number, "word_percent"]


def say_change(percent: Number | float, lang: str = "zh", decimals: int = 2) -> list[str]:
    """A price change: 上涨/下跌 + percentage, or 平盘 when it rounds to zero."""
    d = _quantize(percent, decimals)
    if d == 0:
        _check_lang(lang)
        return ["quote_flat"]
    return ["quote_up" if d > 0 else "quote_down", *say_percent(abs(d), lang, decimals)]


def say_stock(code: str, lang: str = "zh", available: Container[str] | None = None) -> list[str]:
    """The recorded name ``stock_<code>`` when ``available`` has it, else the code digit by digit."""
    name = f"stock_{code}"
    if available is not None and name in available:
        _check_lang(lang)
        return [name]
    return say_digits(code, lang)


def say_holding(stock: Sequence[str], quantity: Number, lang: str = "zh") -> list[str]:
    """Say a position: 您持有 <stock> 五百股 / "You hold five hundred shares of <stock>"."""
    _check_lang(lang)
    if lang == "zh":
        return ["position_holding", *stock, *say_quantity(quantity, lang)]
    of = "word_share_of" if to_decimal(quantity) == 1 else "word_shares_of"
    return ["position_holding", *say_quantity(quantity, lang, unit=None), of, *stock]


def say_order_readback(
    side: Side, stock: Sequence[str], quantity: Number, price: Number | float, lang: str = "zh"
) -> list[str]:
    """Read an order back: 您将买入 <stock> 五百股 委托价格 十二点五零 元 / "You are buying five hundred
    shares of <stock> at a price of twelve point five zero yuan"."""
    _check_lang(lang)
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', not {side!r}")
    head = "order_you_are_buying" if side == "buy" else "order_you_are_selling"
    tail = ["order_at_price", *say_price(price, lang), "word_yuan"]
    if lang == "zh":
        return [head, *stock, *say_quantity(quantity, lang), *tail]
    of = "word_share_of" if to_decimal(quantity) == 1 else "word_shares_of"
    return [head, *say_quantity(quantity, lang, unit=None), of, *stock, *tail]


def say_queue_position(n: int, lang: str = "zh") -> list[str]:
    """您现在排在第 三 位 / "You are number three in line" (ordinal: 第二千, never 第两千)."""
    return ["queue_position_before", *say_number(n, lang, ordinal=True), "queue_position_after"]


def say_expected_wait(minutes: int, lang: str = "zh") -> list[str]:
    """预计等待时间约为 两 分钟 / "The expected wait time is about two minutes" ("one minute")."""
    _check_lang(lang)
    if minutes < 0:
        raise ValueError("negative wait")
    after = "queue_wait_after_one" if minutes == 1 else "queue_wait_after"
    return ["queue_wait_before", *_count(minutes, lang), after]
