"""A real download attempt of the official Chinese model: where the network is closed it fails clearly."""
import socket

import pytest

from asr.cli import main


def _vosk_site_reachable() -> bool:
    try:
        socket.create_connection(("alphacephei.com", 443), timeout=2).close()
        return True
    except OSError:
        return False


def test_closed_network_gives_a_clear_message_quickly(tmp_path, capsys):
    if _vosk_site_reachable():
        pytest.skip("the Vosk site is reachable from here: this test is about a closed network")
    rc = main(["model", "fetch", "cn", "--dest", str(tmp_path), "--timeout", "3"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "cannot download https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip" in err
    assert "asr.model_path" in err  # says what to do instead
    assert list(tmp_path.iterdir()) == []
