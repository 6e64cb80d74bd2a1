"""Phone-number masking for logs (personal data never reaches a log line)."""
from __future__ import annotations

import re

# A phone number: 7–15 digits (optionally +country, or an area code and a
# hyphen), not part of a longer token — so timestamps (2026-11-22T00:21:15),
# epoch times and Asterisk unique ids (1763770875.42) are left alone. A token
# is ASCII letters, digits and _: Chinese has no spaces between words, so a
# number right after 电话是 is still a number ("我的电话是13800138000").
_DIGITS = re.compile(r"(?<![A-Za-z_\d.:+\-])(\+?\d{7,15}|0\d{2,3}-\d{7,8})(?![A-Za-z_\d:\-]|\.\d)")


def mask_number(number: str | None) -> str:
    """``13800138000`` → ``138****8000``; short service numbers stay readable.

    Numbers of six digits or fewer (110, 12345, 95598) are public service
    numbers, not personal data, and are returned unchanged.
    """
    if not number:
        return ""
    digits = number if number.isdigit() else "".join(ch for ch in number if ch.isdigit())
    if len(digits) <= 6:
        return number
    keep_head = 3
    keep_tail = 4 if len(digits) >= 10 else 2
    return digits[:keep_head] + "*" * (len(digits) - keep_head - keep_tail) + digits[-keep_tail:]


def mask_text(text: str) -> str:
    """Mask every phone-number-like run of digits inside free text."""
    return _DIGITS.sub(lambda m: mask_number(m.group(0)), text)
