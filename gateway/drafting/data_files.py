"""Loading the drafting data files (YAML) with errors that name file and entry."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["DATA_DIR", "DataFileError", "load_yaml", "require"]

DATA_DIR = Path(__file__).resolve().parent / "data"


class DataFileError(ValueError):
    """A taxonomy or gazetteer file is missing, unreadable or malformed."""

    def __init__(self, path: Path | str, where: str, problem: str) -> None:
        self.path = str(path)
        self.where = where
        self.problem = problem
        super().__init__(f"{self.path}: {where}: {problem}" if where else f"{self.path}: {problem}")


def load_yaml(path: Path | str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(path, "", f"cannot read file ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataFileError(path, "", f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DataFileError(path, "", "top level must be a mapping")
    return data


def require(path: Path | str, where: str, mapping: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(mapping, dict):
        raise DataFileError(path, where, "must be a mapping")
    if key not in mapping:
        raise DataFileError(path, where, f"missing '{key}'")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataFileError(path, where, f"'{key}' must be {name}, got {type(value).__name__}")
    return value
