"""Number policy: parse, normalise and admit a number before anything dials it.

A dialer that dials whatever string it is handed is a toll-fraud tool. Every
number goes through :meth:`NumberPolicy.check` first: it is parsed with
``phonenumbers`` (region CN), must be a valid number of an allowed kind, and
comes out as a dial string of digits only in national format
(``13800138000``, ``02088889999``). The dialplan accepts nothing else either
(``[hotline-callback-out]`` only matches Chinese mobile and landline shapes).

Kinds: ``mobile``, ``landline`` (fixed line), ``tollfree`` (800), ``shared``
(400), ``premium``, ``international``, ``other``. Default allowed:
mobile and landline. A local landline without its area code (``88889999``)
is completed with the configured ``local_area_code``.

The dialplan dials only :data:`DIALPLAN_KINDS` (mobile ``1XXXXXXXXXX``,
landline ``0`` + area code, 10–12 digits): 400/800 numbers, ``00``
international numbers, 9-digit premium numbers would be refused there, so the
configuration may allow no other kind (:func:`undialable_kinds`).
"""
from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

__all__ = ["DEFAULT_KINDS", "DIALPLAN_KINDS", "KINDS", "NumberPolicy", "PolicyDecision", "national_digits",
           "undialable_kinds"]

KINDS = frozenset({"mobile", "landline", "tollfree", "shared", "premium", "international", "other"})
DEFAULT_KINDS = frozenset({"mobile", "landline"})
#: what asterisk_conf/extensions.conf [hotline-callback-out] dials (keep the two in step)
DIALPLAN_KINDS = frozenset({"mobile", "landline"})

_TYPE_KIND = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "landline",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "landline",
    PhoneNumberType.TOLL_FREE: "tollfree",
    PhoneNumberType.SHARED_COST: "shared",
    PhoneNumberType.PREMIUM_RATE: "premium",
}
_MAX_INPUT = 40


@dataclass(frozen=True)
class PolicyDecision:
    """``allowed`` with the national dial string, or a ``reason`` it is refused."""

    allowed: bool
    dial: str = ""
    kind: str = ""
    reason: str = ""
    #: E.164 form (for keys: one number, one identity however it was written)
    e164: str = ""


def national_digits(e164: str) -> str:
    """``+8613800138000`` → ``13800138000``, ``+862088889999`` → ``02088889999`` (for masked display)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    if number.country_code != 86:
        return e164
    return "".join(ch for ch in phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
                   if ch.isdigit())


def undialable_kinds(kinds: str) -> list[str]:
    """The kinds in a configured ``allowed_kinds`` text that the dialplan would refuse to dial."""
    return sorted({k.strip() for k in kinds.split(",") if k.strip()} & KINDS - DIALPLAN_KINDS)


class NumberPolicy:
    def __init__(self, allowed_kinds: frozenset[str] | set[str] = DEFAULT_KINDS, local_area_code: str = "") -> None:
        unknown = set(allowed_kinds) - KINDS
        if unknown:
            raise ValueError(f"unknown number kind(s): {', '.join(sorted(unknown))}")
        code = local_area_code.strip()
        if code and not (code.isdigit() and code.startswith("0") and 3 <= len(code) <= 4):
            raise ValueError(f"local_area_code {local_area_code!r} is not like 020 or 0755")
        self.allowed_kinds = frozenset(allowed_kinds)
        self.local_area_code = code

    @classmethod
    def from_text(cls, kinds: str, local_area_code: str = "") -> NumberPolicy:
        return cls(frozenset(k.strip() for k in kinds.split(",") if k.strip()), local_area_code)

    def check(self, raw: object) -> PolicyDecision:
        """Never raises: anything unparseable is refused with a reason."""
        if not isinstance(raw, str):
            return PolicyDecision(False, reason="not text")
        text = raw.strip()
        if not text or len(text) > _MAX_INPUT:
            return PolicyDecision(False, reason="empty or too long")
        if any(ch.isalpha() for ch in text):
            return PolicyDecision(False, reason="letters in number")
        digits = "".join(ch for ch in text if ch.isdigit())
        if self.local_area_code and not text.startswith("+") and len(digits) in (7, 8) and digits[0] in "23456789":
            text = self.local_area_code + digits
        try:
            number = phonenumbers.parse(text, "CN")
        except phonenumbers.NumberParseException:
            return PolicyDecision(False, reason="not a phone number")
        except Exception:  # noqa: BLE001 — a parser bug must refuse, never crash the dialer
            return PolicyDecision(False, reason="not a phone number")
        if not phonenumbers.is_valid_number(number):
            return PolicyDecision(False, reason="not a valid number (short code, incomplete or unknown range)")
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if number.country_code != 86:
            kind = "international"
        else:
            kind = _TYPE_KIND.get(phonenumbers.number_type(number), "other")
        if kind not in self.allowed_kinds:
            return PolicyDecision(False, kind=kind, reason=f"{kind} numbers are not allowed", e164=e164)
        if kind == "international":
            dial = "00" + e164[1:]
        else:
            national = str(number.national_number)
            dial = national if kind == "mobile" or national.startswith(("400", "800")) else "0" + national
        return PolicyDecision(True, dial=dial, kind=kind, e164=e164)
