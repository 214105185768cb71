"""The files of every long, resumable job (mining, benchmark, evaluation).

meta.json holds the settings that shape the results; a rerun must bring the same.
One process at a time works in a run directory (it holds .lock): two would both do
the missing work and append it twice.
Results are append-only JSON lines that survive kill -9: a record counts once its
line is whole. Appends are flushed and fsynced one by one;
on open, a last line torn by a kill is dropped and the file rewritten without it, so
the next append starts on a clean line. Nothing whole is lost, nothing counted twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from autojudge.errors import AutojudgeError


@contextmanager
def run_lock(root: str | Path, what: str = "run") -> Iterator[None]:
    """Hold `root` for this process, or refuse at once when another one holds it.

    An flock, so the kernel drops it when the holder dies, kill -9 included.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise AutojudgeError(f"{root} is in use by another {what} (process {holder}); "
                                 "wait for it to end or stop it, or use another --out") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def check_meta(root: str | Path, meta: dict, what: str = "run", recorded_later: tuple[str, ...] = ()) -> None:
    """Write root/meta.json, or refuse to resume a run made with other settings, naming
    each changed setting with its old and new value.

    `recorded_later` names settings that runs made before they were recorded lack:
    absent from the old meta.json, such a setting is "not recorded" and not compared."""
    path = Path(root) / "meta.json"
    if path.exists():
        old = json.loads(path.read_text())
        meta = {k: v for k, v in meta.items() if k in old or k not in recorded_later}
        changed = changed_settings(old, meta)
        if changed:
            raise AutojudgeError(f"{root} holds a {what} with other settings: {'; '.join(changed)}; "
                                 "use another --out, or the same settings to resume")
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path)


def changed_settings(old: dict, new: dict, prefix: str = "") -> list[str]:
    """"key: old -> new" for each setting that differs, nested settings by their dotted
    path ("features.position: ... -> ..."), so that a refusal says what changed."""
    changed = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            changed += changed_settings(before, after, f"{prefix}{key}.")
        else:
            changed.append(f"{prefix}{key}: {_shown(before)} -> {_shown(after)}")
    return changed


_MISSING = object()


def _shown(value, width: int = 60) -> str:
    if value is _MISSING:
        return "(none)"
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def read_records(path: str | Path, repair: bool = True) -> list[dict]:
    """The whole records of `path` ([] when missing), repairing a torn last line.

    `repair=False` only reads: for readers of a run that may still be writing to it.
    """
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
    if repair and whole != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(whole)
        os.replace(tmp, path)
    return records


def append_record(path: str | Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def host_description() -> str:
    """The CPU a run ran on, as far as it sets llama.cpp's speed: its model, cores and
    widest vector instructions (the same machine type has come with AVX-512 and without,
    and llama.cpp's quantized kernels run about 3x faster with it)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux: the model name is what we can tell
        pass
    vector = ("AVX-512" + (" VNNI" if "avx512_vnni" in flags else "") if "avx512f" in flags
              else "AVX2" if "avx2" in flags else "no AVX2" if flags else None)
    return ", ".join(x for x in (model, f"{os.cpu_count()} cores", vector) if x)


# A mining run's folder of the training-free rules' features, one file per problem,
# written by autojudge.mining.rule_features and read by the judge's head-to-head.
RULE_FEATURES_DIR = "rules"
# A mining run's file of contrast regenerations (one line per important label), written
# by autojudge.mining.contrast and read by the "contrast" label definition.
CONTRAST_FILE = "contrast.jsonl"
