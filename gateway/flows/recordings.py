"""Does a voice message that Asterisk says it recorded really hold audio?

res_agi's ``RECORD FILE`` does not check its writes: on a disk with free inodes but no free
blocks it creates the file, writes nothing (or a few bytes), and still answers success. The
flow would then tell the citizen "saved" and queue a transcription job for an empty file.
When the gateway can see Asterisk's recordings (``flows.recordings_root``: "/" on the same
host, the chroot in the lab), the record node asks this check before saying "saved"; a
missing, header-only or truncated file takes the flow's error path (record_error, an agent).

The ``stat`` runs in a thread: it is cheap on a healthy local disk, but a full, failing or
network file system can block, and the reactor serves every call.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.logger import Logger

__all__ = ["MIN_AUDIO_BYTES", "WAV_HEADER_BYTES", "RecordingCheck", "recording_problem"]

log = Logger()

#: Asterisk's format_wav header (RIFF + fmt + data chunk headers)
WAV_HEADER_BYTES = 44
#: one 20 ms frame of 8 kHz 16-bit audio: less than this after the header is no message
MIN_AUDIO_BYTES = 320


def recording_problem(size: int | None, end_position: int = 0, min_audio_bytes: int = MIN_AUDIO_BYTES) -> str | None:
    """Why a recording of ``size`` bytes (None: no file) holds no message, or None if it does.

    ``end_position`` is RECORD FILE's ``endpos`` (samples of 16-bit audio Asterisk believes it
    wrote, 0 when unknown): a file holding less than half of that was cut short by the disk.
    """
    if size is None:
        return "missing"
    if size < WAV_HEADER_BYTES + min_audio_bytes:
        return f"{size} bytes (no audio)"
    if end_position > 0 and size - WAV_HEADER_BYTES < end_position:  # < half of 2 bytes per sample
        return f"{size} bytes, {end_position} samples recorded (truncated)"
    return None


class RecordingCheck:
    """Stat a recording named by its path inside Asterisk's file tree, below ``root``."""

    def __init__(self, root: str, run_in_thread: Callable[..., Any],
                 min_audio_bytes: int = MIN_AUDIO_BYTES) -> None:
        self.root = root
        self._run = run_in_thread
        self.min_audio_bytes = min_audio_bytes

    def local_path(self, path: str) -> Path:
        return Path(self.root) / path.lstrip("/")

    def _size(self, path: str) -> int | None:
        local = self.local_path(path)
        try:
            return os.stat(local).st_size
        except FileNotFoundError:
            if not local.parent.is_dir():
                # the folder itself is not here: a wrong root or a volume not mounted, not a full disk.
                # Say so (logged by problem()) and keep the message rather than drop every one.
                raise NotADirectoryError(f"recordings folder {local.parent} not visible from the gateway "
                                         "(check flows.recordings_root and the spool mount)") from None
            return None

    async def problem(self, path: str, end_position: int = 0) -> str | None:
        """Why the recording at ``path`` holds no message, or None (it does, or it cannot be
        checked: an error other than a missing file in a visible folder — no permission, the
        folder itself missing — is logged, and the message kept)."""
        try:
            size = await self._run(self._size, path)
        except OSError as exc:
            log.warn("Recording {path} not checked: {error}", path=path, error=exc)
            return None
        return recording_problem(size, end_position, self.min_audio_bytes)
