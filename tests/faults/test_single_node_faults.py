"""Faults on the single-node lab, counted (real Asterisk 22, the lab carrier, Redis, the gateway
with its dialer on): each scenario of ``python -m gateway.lab.faults_single`` must lose nothing
and double nothing. The rows are printed (pytest -s shows them)."""

from __future__ import annotations

from gateway.lab import Lab
from gateway.lab.faultcount import FaultRow, format_work_table
from gateway.lab.faults_single import SCENARIOS


def _run(lab: Lab, name: str) -> FaultRow:
    row = SCENARIOS[name](lab, lambda _message: None)
    print("\n" + format_work_table([row]))
    return row


def test_citizens_queued_when_asterisk_crashes_each_get_exactly_one_callback(fault_lab: Lab) -> None:
    row = _run(fault_lab, "asterisk")
    assert (row.lost, row.doubled) == (0, 0), row


def test_a_redis_crash_with_aof_loses_no_callback_and_dials_none_twice(fault_lab: Lab) -> None:
    row = _run(fault_lab, "redis")
    assert (row.lost, row.doubled) == (0, 0), row


def test_a_gateway_killed_between_lease_and_dial_dials_each_callback_exactly_once(fault_lab: Lab) -> None:
    row = _run(fault_lab, "gateway-lease")
    assert (row.lost, row.doubled) == (0, 0), row


def test_the_ticket_webhook_down_for_an_hour_loses_and_doubles_no_draft(fault_lab: Lab) -> None:
    row = _run(fault_lab, "webhook")
    assert (row.lost, row.doubled, row.jobs) == (0, 0, 12), row


def test_a_full_recordings_disk_still_puts_the_citizen_through_and_counts_the_failure(fault_lab: Lab) -> None:
    row = _run(fault_lab, "disk")
    assert (row.lost, row.doubled) == (0, 0), row
    assert not any("NOT told" in note for note in row.notes), row  # heard record_error
    assert "service=recording}: 1;" in row.notes[0] + ";", row


def test_a_disk_full_of_data_but_not_inodes_is_caught_before_saved_and_loses_nothing(fault_lab: Lab) -> None:
    """With free inodes Asterisk creates the recording, and res_agi's RECORD FILE never checks its writes
    (ast_writestream's result is ignored): it answers success over a 4-byte file. The gateway stats the
    recording before saying "saved" (gateway/flows/recordings.py): no audio → record_error, the queue, no
    job, and the failure counted — as with a disk whose inodes are full too."""
    row = _run(fault_lab, "disk-blocks")
    assert (row.lost, row.doubled) == (0, 0), row
    assert not any("NOT told" in note for note in row.notes), row  # heard record_error, not record_ok
    assert "record:no_audio" in row.notes[0] and "jobs 0" in row.notes[0], row
    assert "service=recording}: 1;" in row.notes[0] + ";", row
