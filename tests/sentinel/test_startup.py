"""Sentinels that cannot be reached, or that do not know the master, stop a start with a clear error
and a non-zero exit — never a hang: the start-up check itself, ``hotline-gateway run`` and
``hotline-asr worker`` as processes. Real sockets (nothing listens on the "unreachable" ports) and,
for the unknown master, real sentinels; integration tests."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.config import load_config
from gateway.storage.redis_clients import check_sentinels
from gateway.storage.redis_url import SentinelError

from .conftest import NOBODY

REFUSED = (
    "redis.sentinels: no sentinel of 127.0.0.1:26477, 127.0.0.1:26478, 127.0.0.1:26479 answered "
    "(127.0.0.1:26477: connection refused; 127.0.0.1:26478: connection refused; 127.0.0.1:26479: connection refused)"
)


def test_the_start_up_check_names_every_sentinel_that_did_not_answer():
    config = load_config(environ={"HOTLINE_REDIS_SENTINELS": NOBODY})
    with pytest.raises(SentinelError) as info:
        check_sentinels(config.redis, timeout=1.0)
    assert str(info.value) == REFUSED


def test_sentinels_that_do_not_know_the_master_name_say_so_and_the_right_name_gives_the_primary(cluster):
    wrong = load_config(environ={**cluster.environment(), "HOTLINE_REDIS_SENTINEL_MASTER": "hotlines"})
    with pytest.raises(SentinelError, match="redis.sentinels: the sentinels 127.0.0.1:26470, 127.0.0.1:26471, "
                                            "127.0.0.1:26472 do not know master 'hotlines'"):
        check_sentinels(wrong.redis)
    assert check_sentinels(load_config(environ=cluster.environment()).redis) == ("127.0.0.1", 6470)


def run_command(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HOTLINE_")}
    environment.update(env)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, "-m", *args], env=environment, cwd=repo, capture_output=True, text=True,
                          check=False, timeout=120)


def test_the_gateway_with_unreachable_sentinels_exits_non_zero_with_the_message():
    done = run_command(["gateway", "run"], HOTLINE_REDIS_SENTINELS=NOBODY, HOTLINE_AGI_PORT="0",
                       HOTLINE_HTTP_PORT="0")
    assert done.returncode == 1, done.stderr
    assert f"hotline-gateway: cannot start: {REFUSED}" in done.stderr


def test_the_asr_worker_with_unreachable_sentinels_exits_non_zero_with_the_message():
    done = run_command(["asr", "worker"], HOTLINE_REDIS_SENTINELS=NOBODY, HOTLINE_ASR_METRICS_PORT="0")
    assert done.returncode == 1, done.stderr
    assert f"hotline-asr: worker cannot start: {REFUSED}" in done.stderr
