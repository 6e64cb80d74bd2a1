"""Job decoding and recording-path mapping (pure)."""
import json
from pathlib import Path

import pytest

from asr.jobs import JobError, decode_job
from asr.worker import resolve_recording


def test_job_written_by_the_ivr_decodes():
    job = {"recording_id": "1763-42-20261122", "path": "/var/spool/asterisk/recording/x.wav", "caller": "138"}
    decoded = decode_job({"recording_id": job["recording_id"], "data": json.dumps(job)})
    assert decoded["path"] == job["path"] and decoded["recording_id"] == "1763-42-20261122"


@pytest.mark.parametrize("fields, message", [
    ({"recording_id": "a"}, "no data"),
    ({"recording_id": "a", "data": "{oops"}, "not JSON"),
    ({"recording_id": "a", "data": "[1]"}, "not a JSON object"),
    ({"data": json.dumps({"path": "/x.wav"})}, "no recording_id"),
    ({"data": json.dumps({"recording_id": "a/../b", "path": "/x.wav"})}, "plain name"),
    ({"data": json.dumps({"recording_id": "a"})}, "no recording path"),
])
def test_bad_jobs_are_job_errors(fields, message):
    with pytest.raises(JobError, match=message):
        decode_job(fields)


def test_recording_path_is_mapped_under_the_root():
    assert resolve_recording("/srv/ast-root", "/var/spool/asterisk/recording/a.wav") == Path(
        "/srv/ast-root/var/spool/asterisk/recording/a.wav")
    assert resolve_recording("", "/var/spool/a.wav") == Path("/var/spool/a.wav")


def test_recording_path_cannot_climb_out_of_the_root():
    with pytest.raises(JobError):
        resolve_recording("/srv/ast-root", "/var/spool/../../../etc/shadow")
