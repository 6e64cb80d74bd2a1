"""A private, throw-away redis-server for the dialer's Redis-backed unit tests.

Port 6394 with no persistence (``--save ""``); started once per test session
by the ``dialer_redis`` fixture (imported by the test modules) and flushed
before every test. Skipped when redis-server is not installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

#: HOTLINE_TEST_DIALER_REDIS_PORT moves it (two checkouts testing side by side)
PORT = int(os.environ.get("HOTLINE_TEST_DIALER_REDIS_PORT", "6394"))


@pytest.fixture(scope="session")
def _redis_server():
    import redis

    client = redis.Redis(port=PORT, decode_responses=True, socket_timeout=2)
    try:
        client.ping()
        yield None  # one is already running (a developer's); reuse it
        return
    except redis.ConnectionError:
        pass
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [binary, "--port", str(PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.skip("redis-server did not start on port 6394")
            time.sleep(0.05)
    yield proc
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def dialer_redis(_redis_server):
    import redis

    client = redis.Redis(port=PORT, decode_responses=True, socket_timeout=5)
    client.flushdb()
    yield client
    client.close()
