"""`hotline-asr model fetch`: sha256 check and unpacking, over a local file:// URL (no network)."""
import hashlib
import zipfile

import pytest

from asr.cli import main
from asr.models import MODELS, FetchError, fetch_model


@pytest.fixture
def model_zip(tmp_path):
    path = tmp_path / "vosk-model-tiny-xx.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("vosk-model-tiny-xx/conf/mfcc.conf", "--sample-frequency=8000\n")
        zf.writestr("vosk-model-tiny-xx/am/final.mdl", b"\0" * 100)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_official_chinese_model_is_pinned_to_its_sha256():
    spec = MODELS["cn"]
    assert spec.url == "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip"
    assert spec.sha256 == "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"


def test_good_checksum_unpacks_the_model(model_zip, tmp_path):
    path, digest = model_zip
    dest = tmp_path / "models"
    model = fetch_model("xx", dest, url=path.as_uri(), sha256=digest)
    assert model == dest / "vosk-model-tiny-xx"
    assert (model / "conf" / "mfcc.conf").read_text() == "--sample-frequency=8000\n"
    assert [p.name for p in dest.iterdir()] == ["vosk-model-tiny-xx"]  # no temporary files left


def test_wrong_checksum_is_refused_and_nothing_is_kept(model_zip, tmp_path):
    path, digest = model_zip
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_model("xx", dest, url=path.as_uri(), sha256="0" * 64)
    assert list(dest.iterdir()) == []


def test_archive_members_outside_the_destination_are_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../../evil.txt", "x")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(FetchError, match="outside"):
        fetch_model("xx", tmp_path / "models", url=path.as_uri(), sha256=digest)
    assert not (tmp_path / "evil.txt").exists()


def test_unknown_language_without_url_is_a_clear_error(tmp_path):
    with pytest.raises(FetchError, match="no official model known for 'zz'"):
        fetch_model("zz", tmp_path)


def test_cli_fetch_prints_the_model_path(model_zip, tmp_path, capsys):
    path, digest = model_zip
    rc = main(["model", "fetch", "xx", "--dest", str(tmp_path / "m"), "--url", path.as_uri(), "--sha256", digest])
    assert rc == 0 and "vosk-model-tiny-xx" in capsys.readouterr().out
    rc = main(["model", "fetch", "xx", "--dest", str(tmp_path / "m"), "--url", path.as_uri(), "--sha256", "ab"])
    assert rc == 1 and "sha256 mismatch" in capsys.readouterr().err
