"""The JSON body reader shared by the /callbacks and /surveys APIs."""
from __future__ import annotations

import io

from gateway.httpjson import read_json


class Request:
    def __init__(self, body: bytes | None):
        self.content = None if body is None else io.BytesIO(body)


def test_a_json_body_is_decoded_and_no_body_reads_as_an_empty_object():
    assert read_json(Request(b'{"number": "13800138000"}'), 100) == (0, {"number": "13800138000"})
    assert read_json(Request(b""), 100) == (0, {})
    assert read_json(Request(None), 100) == (0, {})


def test_a_body_over_the_limit_or_not_json_is_refused_with_its_status():
    assert read_json(Request(b"x" * 101), 100) == (413, {"error": "body too large"})
    assert read_json(Request(b"{not json"), 100) == (400, {"error": "body must be JSON"})
