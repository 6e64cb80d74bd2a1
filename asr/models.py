"""``hotline-asr model fetch LANG``: download an official Vosk model, check its sha256, unpack it.

The Vosk site (alphacephei.com) is often unreachable from production networks:
then this fails with a message saying what to do instead (download elsewhere,
copy the unpacked directory, set ``asr.model_path``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODELS", "FetchError", "ModelSpec", "fetch_model", "sha256_file", "unpack_zip"]


class FetchError(RuntimeError):
    """The model could not be downloaded, verified or unpacked (the message says why and what to do)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    url: str
    sha256: str
    size_mb: int


#: official models with a known checksum (add a line per model an operator needs)
MODELS: dict[str, ModelSpec] = {
    "cn": ModelSpec(
        "vosk-model-small-cn-0.22",
        "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip",
        "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba",
        42,
    ),
}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack_zip(archive: str | Path, dest: str | Path) -> Path:
    """Unpack into ``dest`` (refusing members that would land outside it); returns the model directory."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                target = (root / name).resolve()
                if root != target and root not in target.parents:
                    raise FetchError(f"archive member {name!r} would be written outside {dest}")
            zf.extractall(root)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{archive} is not a zip archive: {exc}") from None
    tops = {n.split("/", 1)[0] for n in names if n.strip("/")}
    return root / tops.pop() if len(tops) == 1 and (root / next(iter(tops))).is_dir() else root


def fetch_model(lang: str, dest_dir: str | Path, *, url: str | None = None, sha256: str | None = None,
                timeout: float = 30.0, opener=urllib.request.urlopen) -> Path:
    """Download, verify and unpack; returns the unpacked model directory (for ``asr.model_path``)."""
    spec = MODELS.get(lang)
    if url is None:
        if spec is None:
            raise FetchError(f"no official model known for {lang!r} (known: {', '.join(sorted(MODELS))}); "
                             "give --url and --sha256")
        url, sha256 = spec.url, spec.sha256
    if not sha256:
        raise FetchError("a sha256 is required to fetch a model (--sha256)")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".zip", dir=dest_dir)
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, opener(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FetchError(
                f"cannot download {url}: {reason}. If this machine has no route to the Vosk site, download "
                f"the zip elsewhere, check its sha256 ({sha256}), unpack it here and set asr.model_path "
                "(HOTLINE_ASR_MODEL_PATH) to the unpacked directory"
            ) from None
        actual = digest.hexdigest()
        if actual != sha256.lower():
            raise FetchError(f"sha256 mismatch for {url}: expected {sha256}, got {actual}; the file was discarded")
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest_dir))
        try:
            model_dir = unpack_zip(tmp, staging)
            final = dest_dir / (model_dir.name if model_dir != staging.resolve() else (spec.name if spec else lang))
            if final.exists():
                shutil.rmtree(final)
            os.replace(model_dir, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
