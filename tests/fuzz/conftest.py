"""The fuzz suite's report: examples tried per parser, printed at the end and kept as JSON in pytest's temp dir."""
from __future__ import annotations

import json

import pytest

from .support import TALLY

_REPORT_DIR = pytest.StashKey[object]()


@pytest.fixture(scope="session", autouse=True)
def _fuzz_report_dir(request, tmp_path_factory):
    """Where the JSON report goes: this session's pytest temp dir (never the repository)."""
    request.config.stash[_REPORT_DIR] = tmp_path_factory.getbasetemp()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not TALLY.examples:
        return
    terminalreporter.write_line(TALLY.line())
    directory = config.stash.get(_REPORT_DIR, None)
    if directory is not None:
        path = directory / "fuzz-examples.json"
        path.write_text(json.dumps(TALLY.as_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        terminalreporter.write_line(f"fuzz: per-parser counts and rejection shapes in {path}")
