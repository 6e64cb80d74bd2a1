"""Phone numbers never reach logs in clear."""
from gateway.masking import mask_number, mask_text


def test_mobile_number_keeps_head_and_tail():
    assert mask_number("13800138000") == "138****8000"


def test_service_numbers_are_not_personal():
    assert mask_number("12345") == "12345" and mask_number("110") == "110"


def test_landline_with_area_code():
    assert mask_number("010-12345678") == "010****5678"


def test_mask_text_inside_a_log_line():
    assert mask_text("call from 13800138000 to 12345") == "call from 138****8000 to 12345"


def test_empty():
    assert mask_number("") == "" and mask_number(None) == ""


def test_timestamps_and_unique_ids_are_not_numbers():
    line = "2026-11-22T00:21:15+0800 call 1763770875.42 from 13800138000."
    assert mask_text(line) == "2026-11-22T00:21:15+0800 call 1763770875.42 from 138****8000."


def test_landline_in_text():
    assert mask_text("transfer to 010-12345678 now") == "transfer to 010****5678 now"
