"""Fuzzing phone numbers: the dialling policy, national display and masking.

Any text gets a policy decision (a dial string of ASCII digits, or a refusal with a reason); one number
written many ways (+86, 0086, full-width digits, spaces) is one dial string; a masked number or log line
never shows a whole number of seven digits or more. (Plain text and number-like ASCII into the policy:
tests/unit/test_dialer_policy.py.)
"""
from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.dialer.policy import KINDS, NumberPolicy, national_digits
from gateway.masking import mask_number, mask_text

from .support import TALLY

POLICIES = [NumberPolicy(), NumberPolicy(KINDS, "0755")]
MOBILES = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
LANDLINES = st.from_regex(r"0(10|2[0-9]|[3-9][0-9]{2})[2-8][0-9]{7}", fullmatch=True)
#: digits of other scripts that str.isdigit() (and phonenumbers, for some) takes as digits
_SCRIPTS = {"ascii": "0123456789", "full-width": "０１２３４５６７８９", "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
            "devanagari": "०१२३४५६७८९", "superscript": "⁰¹²³⁴⁵⁶⁷⁸⁹"}


def _in_script(digits: str, script: str) -> str:
    return digits.translate(str.maketrans("0123456789", _SCRIPTS[script]))


@st.composite
def written_numbers(draw) -> str:
    """A number as people and systems write it: prefixes, separators, other digit scripts, junk."""
    digits = draw(MOBILES | LANDLINES | st.text("0123456789", max_size=24))
    digits = _in_script(digits, draw(st.sampled_from(sorted(_SCRIPTS))))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(digits)))
        digits = digits[:at] + draw(st.sampled_from(["-", " ", "\u3000", ".", "(", ")", "/", "#", "*", "x", "转"]))\
            + digits[at:]
    prefix = draw(st.sampled_from(["", "+86", "0086", "+86 ", "86", "+", "00", "(+86)", "＋８６", "+1", "tel:"]))
    return prefix + digits


NUMBERISH = written_numbers() | st.text(max_size=60) | st.text(min_size=41, max_size=400)


@settings(max_examples=400, deadline=None)
@given(raw=NUMBERISH, policy=st.sampled_from(POLICIES))
def test_any_text_is_a_dial_string_or_a_reasoned_refusal_and_the_dial_string_is_stable(raw, policy):
    TALLY.example("phone-policy")
    decision = policy.check(raw)
    if not decision.allowed:
        TALLY.rejected("phone-policy", decision.reason)
        return
    assert decision.dial.isascii() and decision.dial.isdigit() and 7 <= len(decision.dial) <= 20, decision
    assert decision.kind in policy.allowed_kinds
    assert decision.e164.startswith("+") and decision.e164[1:].isascii() and decision.e164[1:].isdigit()
    again = policy.check(decision.e164)  # the stored identity reads back as the same number
    assert (again.allowed, again.dial, again.kind, again.e164) == (True, decision.dial, decision.kind, decision.e164)
    if decision.kind in ("mobile", "landline"):
        assert national_digits(decision.e164) == decision.dial


@settings(max_examples=200, deadline=None)
@given(number=MOBILES | LANDLINES, prefix=st.sampled_from(["+86", "0086", "+86 ", "＋８６", "(+86) "]),
       script=st.sampled_from(["ascii", "full-width"]), gap=st.sampled_from(["", " ", "-", "\u3000"]))
def test_one_number_however_written_is_one_dial_string(number, prefix, script, gap):
    TALLY.example("phone-policy")
    plain = NumberPolicy().check(number)
    if not plain.allowed:  # a landline range that does not exist
        TALLY.rejected("phone-policy", plain.reason)
        return
    national = number[1:] if number.startswith("0") else number  # +86 drops the trunk prefix
    spaced = gap.join([national[:3], national[3:7], national[7:]])
    for variant in (_in_script(number, script), prefix + _in_script(spaced, script)):
        decision = NumberPolicy().check(variant)
        assert (decision.allowed, decision.dial, decision.e164) == (True, plain.dial, plain.e164), variant


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | NUMBERISH)
def test_national_digits_of_any_text_is_text(text):
    TALLY.example("national-digits")
    assert isinstance(national_digits(text), str)


@settings(max_examples=300, deadline=None)
@given(NUMBERISH)
def test_a_masked_number_never_shows_the_whole_number(number):
    """Seven digits or more: at most seven stay (head and tail), never the whole run; fewer: unchanged."""
    TALLY.example("phone-mask")
    masked = mask_number(number)
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) >= 7:
        assert digits not in masked and sum(ch.isdigit() for ch in masked) <= 7, masked
    else:
        assert masked == number


_BEFORE = st.sampled_from(["", "call from ", "我的电话是", "请回电", "号码：", "（", "电话 ", "，", "市民", "é", "Ω"])
_AFTER = st.sampled_from(["", "，谢谢", "。", " now", "）", "谢谢", "号", "é"])


@settings(max_examples=300, deadline=None)
@given(before=_BEFORE, number=MOBILES | LANDLINES | LANDLINES.map(lambda n: f"{n[:4]}-{n[4:]}")
       | MOBILES.map(lambda n: _in_script(n, "full-width")), after=_AFTER)
@example(before="我的电话是", number="13800138000", after="，谢谢")  # a transcript: no spaces in Chinese
def test_a_number_in_a_log_line_or_transcript_is_masked(before, number, after):
    """A number next to Chinese text (no spaces between words) is masked like one between spaces."""
    TALLY.example("phone-mask")
    masked = mask_text(before + number + after)
    digits = "".join(ch for ch in number if ch.isdigit())
    assert digits not in "".join(ch for ch in masked if ch.isdigit()), masked
