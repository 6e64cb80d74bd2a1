"""Redis Sentinel settings (redis.sentinels, redis.sentinel_master, HOTLINE_REDIS_SENTINEL_PASSWORD):
read from the layers like every setting, checked at load, the password a secret; and the blocking
client factory built from them (no sockets: redis-py connects lazily)."""
from __future__ import annotations

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from gateway.config import ConfigError, as_dict, load_config
from gateway.storage.redis_clients import blocking_client, sentinels_of

THREE = "10.0.0.1:26379,10.0.0.2:26379, sentinel-3.local:26380"


def test_sentinels_and_master_come_from_the_environment_and_the_file(tmp_path):
    config = load_config(environ={"HOTLINE_REDIS_SENTINELS": THREE, "HOTLINE_REDIS_SENTINEL_MASTER": "calls-1"})
    sentinels = sentinels_of(config.redis)
    assert sentinels.addresses == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("sentinel-3.local", 26380))
    assert sentinels.master == "calls-1" and sentinels.password is None
    path = tmp_path / "gw.toml"
    path.write_text('[redis]\nsentinels = "[::1]:26379"\n')
    from_file = load_config(path, environ={})
    assert sentinels_of(from_file.redis).addresses == (("::1", 26379),)
    assert sentinels_of(from_file.redis).master == "hotline"  # the default name


def test_without_sentinels_nothing_changes():
    config = load_config(environ={})
    assert config.redis.sentinels == "" and sentinels_of(config.redis) is None


@pytest.mark.parametrize("value, message", [
    ("10.0.0.1", "redis.sentinels: '10.0.0.1' is not host:port"),
    ("10.0.0.1:26379,,10.0.0.2:26379", "redis.sentinels: an empty entry"),
    ("10.0.0.1:0", "redis.sentinels: '10.0.0.1:0': '0' is not a TCP port"),
    ("10.0.0.1:70000", "redis.sentinels: '10.0.0.1:70000': '70000' is not a TCP port"),
    ("h:port", "redis.sentinels: 'h:port': 'port' is not a TCP port"),
    ("::1:26379", "redis.sentinels: '::1:26379' is not host:port \\(\\[host\\]:port for IPv6\\)"),
    (":26379", "redis.sentinels: ':26379' is not host:port"),
])
def test_a_bad_sentinel_entry_stops_the_load_naming_the_field_and_the_entry(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ={"HOTLINE_REDIS_SENTINELS": value})


@pytest.mark.parametrize("name", ["", "two words", "hot/line", "名字"])
def test_a_bad_master_name_stops_the_load(name):
    with pytest.raises(ConfigError, match="redis.sentinel_master: .* is not a master name"):
        load_config(environ={"HOTLINE_REDIS_SENTINELS": THREE, "HOTLINE_REDIS_SENTINEL_MASTER": name})


def test_a_unix_socket_url_cannot_go_with_sentinels():
    with pytest.raises(ConfigError, match="redis.url: with redis.sentinels it must be redis:// or rediss://"):
        load_config(environ={"HOTLINE_REDIS_SENTINELS": THREE, "HOTLINE_REDIS_URL": "unix:///run/redis.sock"})


def test_the_sentinel_password_is_a_secret_from_the_environment_only(tmp_path):
    config = load_config(environ={"HOTLINE_REDIS_SENTINELS": THREE, "HOTLINE_REDIS_SENTINEL_PASSWORD": "s3ntinel"})
    assert sentinels_of(config.redis).password == "s3ntinel"
    assert as_dict(config)["redis"]["sentinel_password"] == "***"
    assert "s3ntinel" not in repr(config) and "s3ntinel" not in repr(sentinels_of(config.redis))
    secret = tmp_path / "sentinel.secret"
    secret.write_text("from-file\n")
    assert load_config(environ={"HOTLINE_REDIS_SENTINEL_PASSWORD_FILE": str(secret)}).redis.sentinel_password \
        == "from-file"
    path = tmp_path / "gw.toml"
    path.write_text('[redis]\nsentinel_password = "s3ntinel"\n')
    with pytest.raises(ConfigError, match="redis.sentinel_password is a secret; set HOTLINE_REDIS_SENTINEL_PASSWORD"):
        load_config(path, environ={})


def test_the_blocking_client_follows_the_sentinels_with_the_urls_db_and_credentials():
    config = load_config(environ={"HOTLINE_REDIS_SENTINELS": THREE, "HOTLINE_REDIS_SENTINEL_PASSWORD": "sp",
                                  "HOTLINE_REDIS_URL": "redis://app:pw@ignored.host:1/4"})
    client = blocking_client(config.redis, timeout=0.5, connect_timeout=0.25)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "hotline" and pool.is_master
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (4, "app", "pw")
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"], kwargs["decode_responses"]) == (0.5, 0.25, True)
    sentinel_clients = pool.sentinel_manager.sentinels
    assert [c.connection_pool.connection_kwargs["port"] for c in sentinel_clients] == [26379, 26379, 26380]
    first = sentinel_clients[0].connection_pool.connection_kwargs
    assert (first["host"], first["password"], first["socket_connect_timeout"]) == ("10.0.0.1", "sp", 0.25)


def test_the_blocking_client_without_sentinels_is_the_urls():
    config = load_config(environ={"HOTLINE_REDIS_URL": "redis://127.0.0.1:6399/2"})
    client = blocking_client(config.redis, timeout=5, decode_responses=False, health_check_interval=30)
    kwargs = client.connection_pool.connection_kwargs
    assert type(client.connection_pool) is redis.ConnectionPool
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == ("127.0.0.1", 6399, 2, 5)
    assert kwargs["health_check_interval"] == 30 and not kwargs.get("decode_responses")
