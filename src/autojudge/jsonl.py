"""Append-only JSON-lines files that survive kill -9: the results of every long job.

A record counts once its line is whole. Appends are flushed and fsynced one by one;
on open, a last line torn by a kill is dropped and the file rewritten without it, so
the next append starts on a clean line. Nothing whole is lost, nothing counted twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_records(path: str | Path) -> list[dict]:
    """The whole records of `path` ([] when missing), repairing a torn last line."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    records = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # torn by a kill
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    whole = "".join(json.dumps(r) + "\n" for r in records)
    if whole != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(whole)
        os.replace(tmp, path)
    return records


def append_record(path: str | Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
