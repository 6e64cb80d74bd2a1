"""Transcript normalisation: Chinese numerals to digits, personal numbers masked.

An ASR transcript arrives as words separated by spaces, without punctuation,
numbers often spoken (幺三八零零幺三八零零零, 幸福路一百二十三号). This module

* joins the words (spaces inside Chinese text carry no meaning),
* turns numerals into digits *where they are numbers*: digit strings
  (二零三 → 203), numbers with units (一百二十三 → 123), and small numbers
  before a measure word (三楼 → 3楼) — but not words that merely contain a
  numeral character (一直, 万一, 十分, 一点都不热, 五一路),
* masks mobile and landline numbers and 18-character ID numbers.

Pure functions, no state; :func:`normalize` is the entry point.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import cn2an

from gateway.masking import mask_number

__all__ = ["Normalized", "PersonalNumber", "compact", "convert_numerals", "mask_personal_numbers", "normalize"]

DIGIT_CHARS = {
    "零": "0", "〇": "0", "○": "0", "洞": "0",
    "幺": "1", "一": "1", "二": "2", "两": "2", "三": "3", "四": "4",
    "五": "5", "六": "6", "七": "7", "八": "8", "九": "9",
}
UNIT_CHARS = "十百千万"
_RUN = re.compile("[" + "".join(DIGIT_CHARS) + UNIT_CHARS + "]+")
# Whitespace between two ASCII letters is meaningful ("KTV bar"); anywhere else it is an ASR word gap.
_GAP = re.compile(r"\s+")

# Measure words after which a short numeral is a number (三楼, 五天, 两点).
MEASURES = (
    "号楼", "单元", "小时", "分钟", "个月", "个小时", "公里", "多天", "多年", "多户", "多个",
    "号", "楼", "层", "栋", "幢", "室", "户", "天", "日", "月", "年", "周", "点", "次",
    "岁", "元", "块", "米", "趟", "辆", "台", "套", "期", "路", "倍",
)
# A lone 一 is a word part far more often than a number (一天到晚, 一点都不): only these.
ONE_MEASURES = ("号楼", "单元", "号", "楼", "层", "栋", "幢", "室", "小时", "个月", "岁")


@dataclass(frozen=True)
class PersonalNumber:
    kind: str  # "mobile" | "landline" | "id_card" | "number"
    masked: str


@dataclass(frozen=True)
class Normalized:
    """The result of normalisation. ``text`` is NOT masked: internal use only."""

    text: str
    masked: str
    numbers: tuple[PersonalNumber, ...]
    raw_numbers: tuple[str, ...]

    @property
    def phones_masked(self) -> list[str]:
        return [n.masked for n in self.numbers if n.kind in ("mobile", "landline")]

    @property
    def id_cards_masked(self) -> list[str]:
        return [n.masked for n in self.numbers if n.kind == "id_card"]


def compact(text: str) -> str:
    """Drop ASR word gaps, keeping a single space only between two ASCII letters."""
    text = text.strip()

    def repl(m: re.Match[str]) -> str:
        before = text[m.start() - 1] if m.start() > 0 else ""
        after = text[m.end()] if m.end() < len(text) else ""
        if before.isascii() and before.isalpha() and after.isascii() and after.isalpha():
            return " "
        return ""

    return _GAP.sub(repl, text)


def _protected_spans(text: str, protected: Iterable[str]) -> list[tuple[int, int]]:
    spans = []
    for word in protected:
        if not word or not _RUN.search(word):
            continue
        start = text.find(word)
        while start >= 0:
            spans.append((start, start + len(word)))
            start = text.find(word, start + 1)
    return spans


def _cn_to_int(run: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return str(cn2an.cn2an(run.replace("幺", "一").replace("洞", "零"), "smart"))
        except (ValueError, KeyError, IndexError, TypeError):
            return None


def _convert_run(run: str, before: str, after: str) -> str | None:
    """The digits for one numeral run, or None when it is not a number here."""
    has_unit = any(ch in UNIT_CHARS for ch in run)
    if not has_unit:
        if len(run) >= 3 or any(ch in "幺洞〇○" for ch in run):
            # Spoken digit by digit: phone numbers, room numbers, ID numbers.
            return "".join(DIGIT_CHARS[ch] for ch in run)
        measures = ONE_MEASURES if run == "一" else MEASURES
        if before == "第" or after.startswith(measures):
            if len(run) == 2 and run[0] != run[1] and not after.startswith(("号", "楼", "层", "室")):
                return None  # 七八天 = "seven or eight days": leave it spoken
            if len(run) == 2:
                return "".join(DIGIT_CHARS[ch] for ch in run)
            return DIGIT_CHARS[run]
        return None
    if run[0] in "百千万":
        return None  # 万一, 千万, 百分之: not a number on its own
    if run == "十" and not (before == "第" or after.startswith(MEASURES)):
        return None  # 十分 (very), 十足
    return _cn_to_int(run)


def convert_numerals(text: str, protected: Iterable[str] = ()) -> str:
    """Chinese numerals → ASCII digits where they denote numbers.

    ``protected`` words (place names such as 五一路, 滨江一号) are left as spoken.
    """
    spans = _protected_spans(text, protected)
    out: list[str] = []
    pos = 0
    for m in _RUN.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in spans):
            continue
        before = text[m.start() - 1] if m.start() > 0 else ""
        after = text[m.end():m.end() + 3]
        digits = _convert_run(m.group(0), before, after)
        if digits is None:
            continue
        out.append(text[pos:m.start()])
        out.append(digits)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


# Personal numbers in digit form. ID cards: 17 digits + digit/X; the spoken
# "叉" for X is folded first. Any other run of 7+ digits is treated as personal.
_ID_X = re.compile(r"(?<=\d{17})[叉xX]")
# Amounts and quantities (1200000元, 3000000平米) are not personal numbers.
_NUMBER = re.compile(r"(?<![\d*])(0\d{2,3}-\d{7,8}|\d{17}[\dX]|\d{7,})(?![\d*]|元|块|万|亿|平|米|吨|斤|人|户|%)")
_MOBILE = re.compile(r"1[3-9]\d{9}")
_LANDLINE = re.compile(r"0\d{2,3}-?\d{7,8}|[2-9]\d{6,7}")
_ID_CARD = re.compile(r"[1-9]\d{5}(18|19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[\dX]")


def classify_number(number: str) -> str:
    if _ID_CARD.fullmatch(number):
        return "id_card"
    if _MOBILE.fullmatch(number):
        return "mobile"
    if _LANDLINE.fullmatch(number):
        return "landline"
    return "number"


def mask_one(number: str, kind: str) -> str:
    if kind == "id_card":
        return number[:2] + "*" * (len(number) - 4) + number[-2:]
    if kind in ("mobile", "landline"):
        return mask_number(number)
    return number[:2] + "*" * (len(number) - 4) + number[-2:]


def mask_personal_numbers(text: str) -> tuple[str, tuple[PersonalNumber, ...], tuple[str, ...]]:
    """Mask phone, ID-card and other long personal numbers in normalised text."""
    text = _ID_X.sub("X", text)
    found: list[PersonalNumber] = []
    raw: list[str] = []

    def repl(m: re.Match[str]) -> str:
        number = m.group(0)
        kind = classify_number(number)
        masked = mask_one(number, kind)
        found.append(PersonalNumber(kind, masked))
        raw.append(number)
        return masked

    return _NUMBER.sub(repl, text), tuple(found), tuple(raw)


def normalize(text: str | None, protected: Iterable[str] = ()) -> Normalized:
    """Compact, convert numerals and mask personal numbers in one transcript."""
    joined = compact(text or "")
    converted = convert_numerals(joined, protected)
    converted = _ID_X.sub("X", converted)
    masked, numbers, raw = mask_personal_numbers(converted)
    return Normalized(text=converted, masked=masked, numbers=numbers, raw_numbers=raw)
