"""Layered configuration: defaults < TOML file < HOTLINE_* environment."""
import pytest

from gateway.config import ConfigError, as_dict, load_config


def test_defaults():
    config = load_config(environ={})
    assert config.agi.port == 4573 and config.redis.url.startswith("redis://")


def test_file_overrides_defaults_and_env_overrides_file(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[agi]\nport = 5000\ncommand_timeout = 4.5\n[redis]\nurl = "redis://10.0.0.1:6379/1"\n')
    config = load_config(path, environ={"HOTLINE_AGI_PORT": "6000"})
    assert config.agi.port == 6000
    assert config.agi.command_timeout == 4.5
    assert config.redis.url == "redis://10.0.0.1:6379/1"


def test_wrong_type_from_environment_is_a_clear_error():
    with pytest.raises(ConfigError, match="HOTLINE_AGI_PORT: expected int"):
        load_config(environ={"HOTLINE_AGI_PORT": "many"})


def test_unknown_setting_in_file(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text("[agi]\nprot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting agi.prot"):
        load_config(path, environ={})


def test_secret_in_file_is_refused(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[ami]\nsecret = "hunter2"\n')
    with pytest.raises(ConfigError, match="is a secret"):
        load_config(path, environ={})


def test_secret_from_environment_or_file_and_hidden_when_shown(tmp_path):
    assert load_config(environ={"HOTLINE_AMI_SECRET": "s3"}).ami.secret == "s3"
    secret_file = tmp_path / "ami.secret"
    secret_file.write_text("from-file\n")
    config = load_config(environ={"HOTLINE_AMI_SECRET_FILE": str(secret_file)})
    assert config.ami.secret == "from-file"
    assert as_dict(config)["ami"]["secret"] == "***"
    assert "from-file" not in repr(config)


def test_bad_port_and_url():
    with pytest.raises(ConfigError, match="not a TCP port"):
        load_config(environ={"HOTLINE_HTTP_PORT": "70000"})
    with pytest.raises(ConfigError, match="scheme must be redis://"):
        load_config(environ={"HOTLINE_REDIS_URL": "http://x"})


def test_a_redis_url_the_call_record_client_cannot_use_stops_the_start_without_showing_the_password():
    with pytest.raises(ConfigError, match="redis.url: Redis URL redis://:\\*\\*\\*@h:x/0: bad port") as info:
        load_config(environ={"HOTLINE_REDIS_URL": "redis://:hunter2@h:x/0"})
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="unsupported parameter"):
        load_config(environ={"HOTLINE_REDIS_URL": "redis://127.0.0.1:6379/0?socket_timeout=1"})


def test_number_kinds_the_dialplan_cannot_dial_are_refused_at_load():
    """[hotline-callback-out] refuses 400/800, 00-international and premium numbers: allowing them would do nothing."""
    for kind in ("tollfree", "shared", "international", "premium"):
        with pytest.raises(ConfigError, match=f"dialer.allowed_kinds: {kind} cannot be dialled"):
            load_config(environ={"HOTLINE_DIALER_ALLOWED_KINDS": f"mobile,landline,{kind}"})
    assert load_config(environ={"HOTLINE_DIALER_ALLOWED_KINDS": "mobile"}).dialer.allowed_kinds == "mobile"
