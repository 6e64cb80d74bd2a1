"""The [asr] configuration section: defaults, layering, the env-only webhook token, validation."""
import pytest

from gateway.config import ConfigError, as_dict, load_config


def test_defaults_match_the_streams_the_ivr_writes():
    asr = load_config(environ={}).asr
    assert asr.jobs_stream == "hotline:jobs:transcribe"
    assert asr.drafts_stream == "hotline:drafts" and asr.draft_key_prefix == "hotline:draft:"
    assert asr.metrics_port == 9514 and asr.max_attempts == 3 and asr.model_path == ""


def test_file_and_environment_layers(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[asr]\nmodel_path = "/models/cn"\nmax_attempts = 5\nreclaim_idle_seconds = 30\n')
    asr = load_config(path, environ={"HOTLINE_ASR_MAX_ATTEMPTS": "7", "HOTLINE_ASR_RECORDINGS_ROOT": "/chroot"}).asr
    assert asr.model_path == "/models/cn" and asr.max_attempts == 7
    assert asr.reclaim_idle_seconds == 30.0 and asr.recordings_root == "/chroot"


def test_webhook_token_in_the_file_is_refused(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[asr]\nwebhook_token = "s3cret"\n')
    with pytest.raises(ConfigError, match="HOTLINE_ASR_WEBHOOK_TOKEN"):
        load_config(path, environ={})


def test_webhook_token_from_environment_or_file_and_never_shown(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    assert load_config(environ={"HOTLINE_ASR_WEBHOOK_TOKEN_FILE": str(secret)}).asr.webhook_token == "from-file"
    config = load_config(environ={"HOTLINE_ASR_WEBHOOK_TOKEN": "t0ken"})
    assert config.asr.webhook_token == "t0ken"
    assert as_dict(config)["asr"]["webhook_token"] == "***"
    assert "t0ken" not in repr(config.asr)


@pytest.mark.parametrize("env, message", [
    ({"HOTLINE_ASR_MAX_ATTEMPTS": "0"}, "max_attempts"),
    ({"HOTLINE_ASR_RECLAIM_IDLE_SECONDS": "0"}, "reclaim_idle_seconds"),
    ({"HOTLINE_ASR_METRICS_PORT": "70000"}, "metrics_port"),
    ({"HOTLINE_ASR_LOW_CONFIDENCE": "1.5"}, "low_confidence"),
    ({"HOTLINE_ASR_WEBHOOK_URL": "ftp://x"}, "webhook_url"),
])
def test_bad_values_are_clear_errors(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env)
