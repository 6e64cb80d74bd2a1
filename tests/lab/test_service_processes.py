"""The lab's own Python services (gateway, ASR worker): settings and pid bookkeeping, no processes started."""
from __future__ import annotations

import os
from pathlib import Path

from gateway.lab import Lab
from gateway.lab.gatewayctl import AsrWorkerProcess, GatewayProcess
from gateway.lab.settings import LabSettings


def _settings(tmp_path: Path, **env: str) -> LabSettings:
    return LabSettings.from_env({"HOTLINE_LAB_CACHE": str(tmp_path), **env})


def test_asr_model_path_and_port_come_from_the_environment(tmp_path: Path) -> None:
    settings = _settings(tmp_path, HOTLINE_ASR_MODEL_PATH="/srv/vosk/cn", HOTLINE_ASR_METRICS_PORT="9600")
    assert settings.asr_model_path == "/srv/vosk/cn"
    assert settings.asr_healthz_url == "http://127.0.0.1:9600/healthz"


def test_asr_worker_reads_recordings_through_the_chroot(tmp_path: Path) -> None:
    """The IVR's job names a path inside Asterisk's root; the worker is told where that root is."""
    lab = Lab(_settings(tmp_path, HOTLINE_ASR_MODEL_PATH=str(tmp_path)))
    env = lab.asr.environment
    assert env["HOTLINE_ASR_RECORDINGS_ROOT"] == str(lab.chroot.root)
    assert env["HOTLINE_ASR_MODEL_PATH"] == str(tmp_path)
    assert env["HOTLINE_REDIS_URL"] == lab.settings.redis_url


def test_no_model_means_no_worker_and_says_why(tmp_path: Path) -> None:
    lab = Lab(_settings(tmp_path, HOTLINE_ASR_MODEL_PATH=str(tmp_path / "missing")))
    said: list[str] = []
    assert lab.start_asr(said.append) is None
    assert "not started" in said[0] and "HOTLINE_ASR_MODEL_PATH" in said[0]
    assert lab.asr.pid() is None


def test_a_pid_file_naming_another_program_is_not_taken_for_the_service(tmp_path: Path) -> None:
    """A stale pid file whose pid now belongs to something else (here: pytest) is never signalled."""
    for cls in (GatewayProcess, AsrWorkerProcess):
        service = cls("python3", tmp_path, tmp_path, "http://127.0.0.1:1/healthz", {})
        service.pid_file.write_text(f"{os.getpid()}\n")
        assert service.pid() is None
        assert service.pid_file.name == f"{service.name}.pid"
