"""gateway.lab.sippcalls: the parsers of SIPp's message log (samples in the format SIPp 3.6 writes)."""
from __future__ import annotations

from gateway.lab.sippcalls import percentile, post_dial_delays_ms, received_statuses

SEP = "----------------------------------------------- 2026-12-05 12:08:03.98{}"


def sent(text: str, n: int = 1) -> str:
    return f"{SEP.format(n)}\nUDP message sent (517 bytes):\n\n{text}\n"


def received(text: str, n: int = 2) -> str:
    return f"{SEP.format(n)}\nUDP message received [314] bytes :\n\n{text}\n\n"


def response(code: int, reason: str, cseq: str = "1 INVITE") -> str:
    return (f"SIP/2.0 {code} {reason}\nVia: SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bK-1\n"
            f"Call-ID: 1-1@127.0.0.2\nCSeq: {cseq}\nContent-Length: 0\n")


INVITE = "INVITE sip:12345@127.0.0.1:5060 SIP/2.0\nCSeq: 1 INVITE\nContent-Length: 0\n"


def test_final_invite_statuses_are_counted_and_provisional_and_bye_left_out() -> None:
    log = (sent(INVITE) + received(response(100, "Trying")) + received(response(488, "Not Acceptable Here"))
           + sent("ACK sip:12345@127.0.0.1:5060 SIP/2.0\nCSeq: 1 ACK\n")
           + sent(INVITE) + received(response(200, "OK")) + received(response(200, "OK", "2 BYE")))
    assert received_statuses(log) == {488: 1, 200: 1}
    assert received_statuses(log, final_only=False) == {100: 1, 488: 1, 200: 1}
    assert received_statuses(log, method="BYE") == {200: 1}


def test_a_request_received_is_not_a_status_and_an_empty_log_counts_nothing() -> None:
    bye = "BYE sip:c@127.0.0.2:5080 SIP/2.0\nCSeq: 2 BYE\n"
    assert received_statuses(received(bye)) == {}
    assert received_statuses("") == {}


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None


def stamped(direction: str, when: str, text: str) -> str:
    what = "UDP message sent (517 bytes):" if direction == "sent" else "UDP message received [314] bytes :"
    return f"----------------------------------------------- 2026-12-05 12:08:{when}\n{what}\n\n{text}\n\n"


def test_post_dial_delay_is_invite_sent_to_the_first_ringing_or_answer_per_call() -> None:
    def invite(call: str) -> str:
        return f"INVITE sip:12345@127.0.0.1:5060 SIP/2.0\nCall-ID: {call}\nCSeq: 1 INVITE\n"

    def answer(call: str, code: int) -> str:
        return f"SIP/2.0 {code} X\nCall-ID: {call}\nCSeq: 1 INVITE\n"

    log = (stamped("sent", "03.000000", invite("a")) + stamped("received", "03.000400", answer("a", 100))
           + stamped("received", "03.004500", answer("a", 200)) + stamped("sent", "03.100000", invite("b"))
           + stamped("sent", "03.600000", invite("b"))  # a retransmission: the delay counts from the first
           + stamped("received", "03.612000", answer("b", 180)) + stamped("received", "03.700000", answer("b", 200))
           + stamped("sent", "04.000000", invite("c")) + stamped("received", "04.002000", answer("c", 488)))
    assert [round(d, 3) for d in post_dial_delays_ms(log)] == [4.5, 512.0]
