"""softswitch.media.say: numbers, money, prices, digits and quantities as prompt names (zh, en)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.media.say import (
    EN_NUMBER_WORDS,
    ZH_NUMBER_WORDS,
    prompt_names,
    say_change,
    say_digits,
    say_expected_wait,
    say_holding,
    say_money,
    say_number,
    say_order_readback,
    say_percent,
    say_price,
    say_quantity,
    say_queue_position,
    say_stock,
)

# -- readable renderings ----------------------------------------------------------------------------

ZH_CHARS = {f"digit_{d}": c for d, c in enumerate("零一二三四五六七八九")} | {
    "unit_shi": "十",
    "unit_bai": "百",
    "unit_qian": "千",
    "unit_wan": "万",
    "unit_yi": "亿",
    "word_dian": "点",
    "word_yuan": "元",
    "word_jiao": "角",
    "word_fen": "分",
    "word_gu": "股",
    "word_fu": "负",
    "word_ling": "零",
    "word_liang": "两",
    "word_percent": "百分之",
    "quote_up": "上涨",
    "quote_down": "下跌",
    "quote_flat": "平盘",
}
EN_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def zh(names: list[str]) -> str:
    return "".join(ZH_CHARS[n] for n in names)


def en(names: list[str]) -> str:
    out = []
    for n in names:
        if n.startswith("digit_"):
            out.append(EN_WORDS[int(n[6:])])
        else:
            out.append(n.split("_", 1)[1].replace("_", " "))
    return " ".join(out)


# -- inverse functions (test only) -------------------------------------------------------------------

ZH_DIGIT = {f"digit_{d}": d for d in range(10)} | {"word_liang": 2}
ZH_SMALL = {"unit_shi": 10, "unit_bai": 100, "unit_qian": 1000}


def parse_zh_int(names: list[str]) -> int:
    """Chinese prompt names -> integer; asserts the sequence is well formed."""
    assert names, "empty"
    if names == ["word_ling"]:
        return 0
    total = acc = section = 0
    digit: int | None = None
    prev = None
    for n in names:
        if n in ZH_DIGIT:
            assert digit is None, f"two digits in a row in {names}"
            digit = ZH_DIGIT[n]
        elif n == "word_ling":
            assert digit is None and prev is not None and prev != "word_ling", f"misplaced 零 in {names}"
        elif n in ZH_SMALL:
            if digit is None:
                assert n == "unit_shi" and prev is None, f"unit without digit in {names}"
                digit = 1
            section += digit * ZH_SMALL[n]
            digit = None
        elif n == "unit_wan":
            acc += (section + (digit or 0)) * 10**4
            section, digit = 0, None
        elif n == "unit_yi":
            total = (total + acc + section + (digit or 0)) * 10**8
            acc = section = 0
            digit = None
        else:
            raise AssertionError(f"unexpected {n} in {names}")
        prev = n
    assert names[-1] != "word_ling"
    return total + acc + section + (digit or 0)


def parse_zh(names: list[str]) -> Decimal:
    sign = -1 if names[:1] == ["word_fu"] else 1
    names = names[1:] if sign < 0 else names
    if "word_dian" in names:
        i = names.index("word_dian")
        frac = "".join(str(ZH_DIGIT[n]) for n in names[i + 1 :])
        assert frac and "word_liang" not in names[i + 1 :]
        return sign * Decimal(f"{parse_zh_int(names[:i])}.{frac}")
    return Decimal(sign * parse_zh_int(names))


TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
EN_VALUE = (
    {f"digit_{d}": d for d in range(10)}
    | {f"num_{w}": 10 + i for i, w in enumerate(TEENS)}
    | {f"num_{w}": 20 + 10 * i for i, w in enumerate(TENS)}
)
EN_SCALE = {"num_thousand": 10**3, "num_million": 10**6, "num_billion": 10**9, "num_trillion": 10**12}


def parse_en_int(names: list[str]) -> int:
    total = group = 0
    last_scale = 10**15
    for n in names:
        if n in EN_VALUE:
            group += EN_VALUE[n]
        elif n == "num_hundred":
            assert 1 <= group <= 9, names
            group *= 100
        elif n in EN_SCALE:
            assert 1 <= group <= 999 and EN_SCALE[n] < last_scale, names
            total += group * EN_SCALE[n]
            last_scale = EN_SCALE[n]
            group = 0
        else:
            raise AssertionError(f"unexpected {n} in {names}")
    return total + group


def parse_en(names: list[str]) -> Decimal:
    sign = -1 if names[:1] == ["word_minus"] else 1
    names = names[1:] if sign < 0 else names
    if "word_point" in names:
        i = names.index("word_point")
        frac = "".join(str(EN_VALUE[n]) for n in names[i + 1 :])
        return sign * Decimal(f"{parse_en_int(names[:i])}.{frac}")
    return Decimal(sign * parse_en_int(names))


def parse_yuan_jiao_fen(names: list[str]) -> Decimal:
    sign = -1 if names[:1] == ["word_fu"] else 1
    names = names[1:] if sign < 0 else names
    if names == ["word_ling", "word_yuan"]:
        return Decimal(0)
    total = Decimal(0)
    start = 0
    for unit, scale in (
        ("word_yuan", Decimal(1)),
        ("word_jiao", Decimal("0.1")),
        ("word_fen", Decimal("0.01")),
    ):
        if unit in names:
            i = names.index(unit)
            part = [n for n in names[start:i] if n != "word_ling"] if unit != "word_yuan" else names[start:i]
            value = parse_zh_int(part)
            assert unit == "word_yuan" or 1 <= value <= 9
            total += value * scale
            start = i + 1
    assert start == len(names), names
    return sign * total


# -- an independent reference for the Chinese integer reading (classic section-by-section) --------


def _ref_section(s: int) -> list[str]:
    out: list[str] = []
    zero = False
    for i, ch in enumerate(f"{s:04d}"):
        d = int(ch)
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("word_ling")
            zero = False
        out.append(f"digit_{d}")
        if i < 3:
            out.append(("unit_qian", "unit_bai", "unit_shi")[i])
    return out


def ref_zh_int(n: int) -> list[str]:
    if n == 0:
        return ["word_ling"]
    secs = [(n // 10 ** (4 * k)) % 10**4 for k in range(4)]
    top = max(k for k in range(4) if secs[k])
    out: list[str] = []
    pending = False
    for k in range(top, -1, -1):
        s = secs[k]
        if s == 0:
            pending = True
            continue
        if k != top and (pending or s < 1000):
            out.append("word_ling")
        pending = False
        out += _ref_section(s)
        out += {
            0: [],
            1: ["unit_wan"],
            2: ["unit_yi"],
            3: ["unit_wan"] + (["unit_yi"] if secs[2] == 0 else []),
        }[k]
    if out[:2] == ["digit_1", "unit_shi"]:
        out.pop(0)
    if out[0] == "digit_2" and out[1:2] in (["unit_qian"], ["unit_wan"], ["unit_yi"]):
        out[0] = "word_liang"
    return out


# -- Chinese -----------------------------------------------------------------------------------------

ZH_CASES = [
    (0, "零"), (1, "一"), (2, "二"), (7, "七"), (10, "十"), (11, "十一"), (15, "十五"), (20, "二十"),
    (22, "二十二"), (100, "一百"), (101, "一百零一"), (110, "一百一十"), (111, "一百一十一"), (200, "二百"),
    (1000, "一千"), (1001, "一千零一"), (1010, "一千零一十"), (1100, "一千一百"), (2000, "两千"),
    (2222, "两千二百二十二"), (10000, "一万"), (10005, "一万零五"), (10010, "一万零一十"), (12000, "一万二千"),
    (12345, "一万二千三百四十五"), (20000, "两万"), (22000, "两万二千"), (100000, "十万"), (150000, "十五万"),
    (203000, "二十万三千"), (200300, "二十万零三百"), (1000100, "一百万零一百"), (2000000, "二百万"),
    (10001000, "一千万一千"), (20000000, "两千万"), (100000000, "一亿"), (100000001, "一亿零一"),
    (100001000, "一亿零一千"), (100010000, "一亿零一万"), (110000000, "一亿一千万"), (200000000, "两亿"),
    (220000000, "两亿二千万"), (1000000000, "十亿"), (10**12, "一万亿"), (10**12 + 10**7, "一万亿零一千万"),
    (1001010000000, "一万零一十亿一千万"), (1234567800000000, "一千二百三十四万五千六百七十八亿"),
    (1234000000000000, "一千二百三十四万亿"), (9999999999999999, "九千九百九十九万九千九百九十九亿九千九百九十九万九千九百九十九"),
    (-5, "负五"), (-10, "负十"), (-2000, "负两千"), ("12.34", "十二点三四"), ("0.5", "零点五"),
    ("12.50", "十二点五零"), ("-0.05", "负零点零五"), ("2.5", "二点五"), (Decimal("10.01"), "十点零一"),
    ("2000.5", "两千点五"), (" 42 ", "四十二"), ("1e3", "一千"),
]  # fmt: skip


@pytest.mark.parametrize(("n", "text"), ZH_CASES)
def test_zh_number(n: int | str | Decimal, text: str) -> None:
    names = say_number(n, "zh")
    assert zh(names) == text
    assert parse_zh(names) == Decimal(str(n).strip())


def test_zh_is_the_default_language() -> None:
    assert say_number(12345) == say_number(12345, "zh")


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("12345.67", "一万二千三百四十五点六七元"), ("12.50", "十二点五元"), (100, "一百元"), (2, "两元"),
        (0, "零元"), ("0.005", "零点零一元"), ("-3.2", "负三点二元"), ("-0.001", "零元"), ("2.5", "二点五元"),
        (Decimal("20000000"), "两千万元"), ("0.1", "零点一元"), ("10", "十元"), (12.3, "十二点三元"),
    ],
)  # fmt: skip
def test_zh_money_decimal(amount: str, text: str) -> None:
    assert zh(say_money(amount, "zh")) == text
    assert zh(say_money(amount, "zh", style="decimal")) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("12345.67", "一万二千三百四十五元六角七分"), ("12.05", "十二元零五分"), ("0.5", "五角"), ("0.05", "五分"),
        ("0.25", "两角五分"), (10, "十元"), (0, "零元"), ("2.02", "两元零两分"), ("-1.5", "负一元五角"),
        ("100.10", "一百元一角"), ("100.01", "一百元零一分"), ("2000", "两千元"), ("0.999", "一元"),
    ],
)  # fmt: skip
def test_zh_money_yuan_jiao_fen(amount: str, text: str) -> None:
    names = say_money(amount, "zh", style="yuan_jiao_fen")
    assert zh(names) == text
    assert parse_yuan_jiao_fen(names) == Decimal(amount).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")


@pytest.mark.parametrize(
    ("price", "text"),
    [("12.5", "十二点五零"), (12, "十二点零零"), ("1700.555", "一千七百点五六"), ("0.1", "零点一零"),
     ("9.999", "十点零零"), ("2000", "两千点零零"), ("-1.5", "负一点五零")],
)  # fmt: skip
def test_zh_price_keeps_two_decimals(price: str, text: str) -> None:
    assert zh(say_price(price, "zh")) == text


def test_price_decimals() -> None:
    assert zh(say_price("3.1415", "zh", decimals=3)) == "三点一四二"
    assert zh(say_price("3.1415", "zh", decimals=0)) == "三"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (500, "五百股"),
        (2, "两股"),
        (100, "一百股"),
        (2000, "两千股"),
        (10, "十股"),
        (1, "一股"),
        (200, "二百股"),
    ],
)
def test_zh_quantity(n: int, text: str) -> None:
    assert zh(say_quantity(n, "zh")) == text
    assert zh(say_quantity(n)) == text


def test_quantity_units() -> None:
    assert say_quantity(300, "zh", unit=None) == ["digit_3", "unit_bai"]
    assert say_quantity(300, "zh", unit="shares") == ["digit_3", "unit_bai", "word_gu"]
    assert say_quantity(5, "zh", unit="word_yuan") == ["digit_5", "word_yuan"]
    assert en(say_quantity(1, "en")) == "one share"
    assert en(say_quantity(500, "en")) == "five hundred shares"
    assert en(say_quantity(500, "en", unit="股")) == "five hundred shares"
    assert en(say_quantity(2, "en", unit=None)) == "two"


def test_zh_percent_and_change() -> None:
    assert zh(say_percent("1.20", "zh")) == "百分之一点二"
    assert zh(say_percent(0, "zh")) == "百分之零"
    assert zh(say_percent("12.345", "zh")) == "百分之十二点三五"
    assert zh(say_change("3", "zh")) == "上涨百分之三"
    assert zh(say_change("-0.5", "zh")) == "下跌百分之零点五"
    assert zh(say_change("0.001", "zh")) == "平盘"
    assert zh(say_change("-10", "zh")) == "下跌百分之十"


def test_digits() -> None:
    assert zh(say_digits("600519", "zh")) == "六零零五一九"
    assert en(say_digits("600519", "en")) == "six zero zero five one nine"
    assert say_digits("000 001-2", "zh") == [f"digit_{d}" for d in (0, 0, 0, 0, 0, 1, 2)]
    assert say_digits("", "en") == []
    for bad in ("12a", "1.5", "*", "١٢"):
        with pytest.raises(ValueError):
            say_digits(bad, "zh")


# -- English -----------------------------------------------------------------------------------------

EN_CASES = [
    (0, "zero"), (7, "seven"), (10, "ten"), (13, "thirteen"), (19, "nineteen"), (20, "twenty"),
    (21, "twenty one"), (40, "forty"), (99, "ninety nine"), (100, "one hundred"), (101, "one hundred one"),
    (110, "one hundred ten"), (999, "nine hundred ninety nine"), (1000, "one thousand"),
    (1005, "one thousand five"), (12345, "twelve thousand three hundred forty five"),
    (100000, "one hundred thousand"), (1000000, "one million"), (2000000000, "two billion"),
    (10**12, "one trillion"), (10**12 + 1, "one trillion one"),
    (999999999999999, "nine hundred ninety nine trillion nine hundred ninety nine billion nine hundred "
     "ninety nine million nine hundred ninety nine thousand nine hundred ninety nine"),
    (-3, "minus three"), ("12.34", "twelve point three four"), ("0.05", "zero point zero five"),
    ("-1.50", "minus one point five zero"),
]  # fmt: skip


@pytest.mark.parametrize(("n", "text"), EN_CASES)
def test_en_number(n: int | str, text: str) -> None:
    names = say_number(n, "en")
    assert en(names) == text
    assert parse_en(names) == Decimal(str(n))


def test_en_money_price_percent() -> None:
    text = "twelve thousand three hundred forty five point six seven yuan"
    assert en(say_money("12345.67", "en")) == text
    assert en(say_money("12345.67", "en", style="yuan_jiao_fen")) == text  # no jiao/fen in English
    assert en(say_money("12.50", "en")) == "twelve point five yuan"
    assert en(say_money(2, "en")) == "two yuan"
    assert en(say_money("-0.1", "en")) == "minus zero point one yuan"
    assert en(say_price("12.5", "en")) == "twelve point five zero"
    assert en(say_percent("1.2", "en")) == "one point two percent"
    assert en(say_change("-1.25", "en")) == "down one point two five percent"
    assert en(say_change("0", "en")) == "flat"


# -- phrases -----------------------------------------------------------------------------------------


def test_stock_and_holding() -> None:
    available = {"stock_600519"}
    assert say_stock("600519", "zh", available) == ["stock_600519"]
    assert say_stock("600520", "zh", available) == say_digits("600520", "zh")
    assert say_stock("600519", "en") == say_digits("600519", "en")
    stock = ["stock_600519"]
    assert say_holding(stock, 500, "zh") == [
        "position_holding",
        "stock_600519",
        "digit_5",
        "unit_bai",
        "word_gu",
    ]
    assert say_holding(stock, 500, "en") == [
        "position_holding",
        "digit_5",
        "num_hundred",
        "word_shares_of",
        *stock,
    ]
    assert say_holding(stock, 1, "en") == ["position_holding", "digit_1", "word_share_of", *stock]


def test_order_readback() -> None:
    stock = say_digits("600519", "zh")
    names = say_order_readback("buy", stock, 200, "1700.5", "zh")
    assert names[0] == "order_you_are_buying"
    assert names[1:7] == stock
    assert zh(names[7:10]) == "二百股"
    assert names[10] == "order_at_price"
    assert zh(names[11:]) == "一千七百点五零元"
    en_names = say_order_readback("sell", ["stock_600519"], 100, 12, "en")
    assert en_names[0] == "order_you_are_selling"
    assert en(en_names[1:3]) == "one hundred"
    assert en_names[3:6] == ["word_shares_of", "stock_600519", "order_at_price"]
    assert en(en_names[6:]) == "twelve point zero zero yuan"
    with pytest.raises(ValueError):
        say_order_readback("short", stock, 1, 1, "zh")  # type: ignore[arg-type]


def test_queue_phrases() -> None:
    assert say_queue_position(2, "zh") == ["queue_position_before", "digit_2", "queue_position_after"]
    assert zh(say_queue_position(2000, "zh")[1:-1]) == "二千"  # ordinal: 第二千, never 第两千
    assert en(say_queue_position(3, "en")[1:-1]) == "three"
    assert say_expected_wait(2, "zh") == ["queue_wait_before", "word_liang", "queue_wait_after"]
    assert say_expected_wait(1, "en") == ["queue_wait_before", "digit_1", "queue_wait_after_one"]
    assert say_expected_wait(5, "en")[-1] == "queue_wait_after"
    with pytest.raises(ValueError):
        say_expected_wait(-1, "zh")


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "", "NaN", "inf", "1,000", True, float("nan")])
def test_not_a_number(bad: object) -> None:
    with pytest.raises(ValueError):
        say_number(bad, "zh")  # type: ignore[arg-type]


def test_limits_and_languages() -> None:
    assert parse_zh(say_number(10**16 - 1, "zh")) == 10**16 - 1
    with pytest.raises(ValueError, match="too large"):
        say_number(10**16, "zh")
    with pytest.raises(ValueError, match="too large"):
        say_number(10**15, "en")
    for fn in (say_number, say_digits, say_money, say_price, say_quantity, say_percent):
        with pytest.raises(ValueError, match="unsupported language"):
            fn("1", "fr")  # type: ignore[operator]
    with pytest.raises(ValueError, match="style"):
        say_money(1, "zh", style="roman")  # type: ignore[arg-type]


def test_float_input_is_exact_decimal() -> None:
    assert zh(say_money(0.1 + 0.2, "zh")) == "零点三元"
    assert zh(say_number(1.5, "zh")) == "一点五"  # type: ignore[arg-type]


# -- properties --------------------------------------------------------------------------------------

ints_to_10_12 = st.integers(min_value=0, max_value=10**12)
# Hypothesis favours boundaries; also draw numbers made of a few non-zero digits among zeros.
sparse = st.lists(st.tuples(st.integers(0, 15), st.integers(1, 9)), max_size=4).map(
    lambda terms: sum(d * 10**p for p, d in terms)
)


@settings(max_examples=400)
@given(st.one_of(ints_to_10_12, sparse.filter(lambda n: n < 10**16), st.integers(0, 10**16 - 1)))
def test_zh_roundtrip_and_reference(n: int) -> None:
    names = say_number(n, "zh")
    assert parse_zh_int(names) == n
    assert names == ref_zh_int(n)
    assert set(names) <= ZH_NUMBER_WORDS
    assert all(not (a == b == "word_ling") for a, b in itertools.pairwise(names))


@settings(max_examples=400)
@given(st.one_of(ints_to_10_12, sparse.filter(lambda n: n < 10**15)))
def test_en_roundtrip(n: int) -> None:
    names = say_number(n, "en")
    assert parse_en_int(names) == n
    assert set(names) <= EN_NUMBER_WORDS


@settings(max_examples=300)
@given(st.decimals(min_value=-(10**12), max_value=10**12, places=3, allow_nan=False, allow_infinity=False))
def test_decimal_roundtrip(d: Decimal) -> None:
    text = format(d, "f")
    assert parse_zh(say_number(text, "zh")) == d
    assert parse_en(say_number(text, "en")) == d


@settings(max_examples=300)
@given(st.decimals(min_value=-(10**10), max_value=10**10, places=2, allow_nan=False, allow_infinity=False))
def test_money_roundtrip(d: Decimal) -> None:
    assert parse_yuan_jiao_fen(say_money(d, "zh", style="yuan_jiao_fen")) == d
    names = say_money(d, "zh")
    assert names[-1] == "word_yuan"
    assert parse_zh(names[:-1]) == d
    en_names = say_money(d, "en")
    assert parse_en(en_names[:-1]) == d
    for lang, vocabulary in (("zh", prompt_names("zh")), ("en", prompt_names("en"))):
        assert set(say_money(d, lang)) <= vocabulary
        assert set(say_price(d, lang)) <= vocabulary
        assert set(say_quantity(abs(int(d)), lang)) <= vocabulary
        assert set(say_change(d, lang)) <= vocabulary
