"""A voice message RECORD FILE reports as saved is checked for audio before the citizen hears "saved"
(gateway/flows/recordings.py): a disk with free inodes but no free blocks leaves a 4-byte file."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task

from gateway.agi.session import RecordResult
from gateway.flows.recordings import MIN_AUDIO_BYTES, WAV_HEADER_BYTES, RecordingCheck, recording_problem
from gateway.metrics import GatewayMetrics
from gateway.storage.flow_store import RedisFlowServices

from .test_flow_engine import PEAK, Services, flow_from, run
from .test_flows import FakeSession

GOOD = WAV_HEADER_BYTES + 2 * 8000  # one second of 8 kHz 16-bit audio


def result_of(coroutine):
    d = defer.Deferred.fromCoroutine(coroutine)
    box = []
    d.addBoth(box.append)
    assert box, "still waiting"
    if isinstance(box[0], Exception) or hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


@pytest.mark.parametrize("size, end_position, problem", [
    (None, 0, "missing"),
    (4, 0, "4 bytes (no audio)"),  # the blocks-full disk of the fault suite
    (WAV_HEADER_BYTES, 0, f"{WAV_HEADER_BYTES} bytes (no audio)"),
    (WAV_HEADER_BYTES + MIN_AUDIO_BYTES - 1, 0, f"{WAV_HEADER_BYTES + MIN_AUDIO_BYTES - 1} bytes (no audio)"),
    (WAV_HEADER_BYTES + 4096, 8000, f"{WAV_HEADER_BYTES + 4096} bytes, 8000 samples recorded (truncated)"),
])
def test_a_recording_without_its_audio_has_a_problem(size, end_position, problem):
    assert recording_problem(size, end_position) == problem


@pytest.mark.parametrize("size, end_position", [
    (WAV_HEADER_BYTES + MIN_AUDIO_BYTES, 0),
    (GOOD, 8000),  # exactly what Asterisk said it wrote
    (GOOD, 0),  # endpos unknown: the size alone
    (WAV_HEADER_BYTES + 8000, 8000),  # half of it: still kept (wav16 / odd counts leave slack)
])
def test_a_recording_with_its_audio_has_none(size, end_position):
    assert recording_problem(size, end_position) is None


def test_the_check_stats_below_the_root_through_the_injected_thread_runner(tmp_path):
    spool = tmp_path / "var/spool/asterisk/hotline/messages"
    spool.mkdir(parents=True)
    (spool / "empty.wav").write_bytes(b"RIFF")
    (spool / "ok.wav").write_bytes(b"\0" * GOOD)
    pending = []

    def in_thread(fn, *args):
        d = defer.Deferred()
        pending.append((d, fn, args))
        return d

    check = RecordingCheck(str(tmp_path), in_thread)
    d = defer.Deferred.fromCoroutine(check.problem("/var/spool/asterisk/hotline/messages/empty.wav", 0))
    answers = []
    d.addCallback(answers.append)
    assert answers == [] and len(pending) == 1  # nothing stat'ed on the caller's (reactor's) thread
    waiting, fn, args = pending.pop()
    waiting.callback(fn(*args))
    assert answers == ["4 bytes (no audio)"]

    sync = RecordingCheck(str(tmp_path), defer.maybeDeferred)
    assert result_of(sync.problem("/var/spool/asterisk/hotline/messages/ok.wav", 8000)) is None
    assert result_of(sync.problem("/var/spool/asterisk/hotline/messages/gone.wav")) == "missing"


def test_a_recording_that_cannot_be_stat_ed_is_kept_not_refused():
    def denied(fn, *args):
        return defer.fail(PermissionError(13, "Permission denied"))

    assert result_of(RecordingCheck("/srv", denied).problem("/var/spool/x.wav")) is None


def test_a_recordings_folder_the_gateway_cannot_see_keeps_every_message(tmp_path):
    """A wrong recordings_root or a spool volume not mounted is not a full disk: the message is kept
    (and the reason logged), where a missing file in a visible folder is refused."""
    check = RecordingCheck(str(tmp_path / "not-mounted"), defer.maybeDeferred)
    assert result_of(check.problem("/var/spool/asterisk/hotline/messages/m.wav")) is None
    (tmp_path / "not-mounted/var/spool/asterisk/hotline/messages").mkdir(parents=True)
    assert result_of(check.problem("/var/spool/asterisk/hotline/messages/m.wav")) == "missing"


def test_the_redis_services_check_only_when_the_recordings_are_visible(tmp_path):
    metrics, clock = GatewayMetrics(CollectorRegistry()), task.Clock()
    blind = RedisFlowServices(object(), defer.maybeDeferred, clock, metrics)
    assert result_of(blind.recording_problem("/var/spool/x.wav")) is None
    (tmp_path / "var/spool").mkdir(parents=True)
    seeing = RedisFlowServices(object(), defer.maybeDeferred, clock, metrics,
                               recordings=RecordingCheck(str(tmp_path), defer.maybeDeferred))
    assert result_of(seeing.recording_problem("/var/spool/x.wav")) == "missing"


class EmptyRecordings(Services):
    """Asterisk said "saved", but the file holds 4 bytes (no free blocks on the spool)."""

    def __init__(self, problem="4 bytes (no audio)", **kw):
        super().__init__(**kw)
        self.problem, self.checked = problem, []

    async def recording_problem(self, path, end_position=0):
        self.checked.append((path, end_position))
        return self.problem


class SavedByDtmf(FakeSession):
    async def record(self, path, fmt="wav", escape_digits="#", timeout_ms=0, silence_s=0, beep=True):
        self.actions.append(("record", path))
        return RecordResult(path=path, ended_by="dtmf", digit="#", end_position=24000)


ERROR_FLOW = PEAK.replace("done_prompt: thanks,", "done_prompt: thanks, error_prompt: ok,")


def test_a_saved_recording_without_audio_is_no_job_the_caller_hears_why_and_reaches_an_agent():
    services = EmptyRecordings()
    session = run(flow_from(ERROR_FLOW), SavedByDtmf(keys=["2"]), services)
    ((path, end_position),) = services.checked
    assert path.startswith("/var/spool/asterisk/hotline/messages/") and path.endswith(".wav")
    assert end_position == 24000
    assert services.jobs == []  # no transcription job pointing at an empty file
    assert ("play", "ok") in session.actions and ("play", "thanks") not in session.actions  # not "saved"
    assert session.actions[-1][0] == "queue"
    assert "record:dtmf" in session.path and "record:no_audio" in session.path
    assert "recording:unavailable" in session.path
    assert [what for what, _ in services.failures] == ["recording"]  # hotline_flow_service_failures{recording}
    assert "4 bytes" in services.failures[0][1]
    assert "HOTLINE_SERVED" not in session.channel_vars  # the safety net still sees a missed call


def test_a_recording_with_audio_is_a_job_and_the_caller_hears_saved():
    services = EmptyRecordings(problem=None)
    session = run(flow_from(ERROR_FLOW), SavedByDtmf(keys=["2"]), services)
    assert len(services.checked) == 1 and len(services.jobs) == 1
    assert ("play", "thanks") in session.actions and "record:no_audio" not in session.path
    assert services.failures == []


def test_an_unwritable_recording_is_not_stat_ed():
    from .test_flow_engine import UnwritableSession

    services = EmptyRecordings()
    run(flow_from(ERROR_FLOW), UnwritableSession(keys=["2"]), services)
    assert services.checked == [] and [what for what, _ in services.failures] == ["recording"]
