"""Run untrusted generated Python in a separate, locked-down process.

Generated programs are never executed in our own process. Each run gets:

- a throw-away working directory (also HOME and TMPDIR), deleted afterwards;
- resource limits: CPU seconds, address space, file size, open files, and processes
  (no fork, no threads beyond the interpreter's own);
- a wall-clock timeout, after which the whole process group is killed;
- no network: a fresh network namespace (only a loopback that is down) when the
  kernel allows one, and in every case an audit hook that refuses sockets;
- when we run as root, the program runs as `nobody`, so the process limit applies
  (root ignores it) and the host's files are not writable;
- an audit hook (installed before the program is read) that refuses starting
  processes, signals, ctypes, writing, truncating, deleting or renaming anything
  outside the working directory, and opening folders outside it.

A run passes only if the interpreter exits 0 and prints, last, a random token the
program never sees; a program that exits early, crashes, loops, forks, allocates
without bound or touches what it must not therefore fails.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Loaded here, not in the child: between fork and exec only plain system calls are
# safe in a process with other threads (the models' thread pools).
_LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
NOBODY = 65534

# Runs inside the sandbox before the untrusted code. It reads the token from stdin so
# that the program cannot find it in its source or arguments.
RUNNER = r'''
import os, sys
token = sys.stdin.readline().strip()
sys.stdin.close()
WORK = os.path.realpath(os.getcwd())

def inside(path):
    try:
        return os.path.realpath(os.fsdecode(path)).startswith(WORK + os.sep)
    except Exception:
        return False

BLOCKED = ("socket.", "subprocess.", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn",
           "os.spawn", "os.system", "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.",
           "_thread.start_new_thread", "pty.", "os.putenv", "os.unsetenv", "sys.addaudithook",
           "os.chdir", "os.chroot", "resource.setrlimit", "os.setuid", "webbrowser.")
PATH_EVENTS = ("os.remove", "os.rmdir", "os.rename", "os.link", "os.symlink", "os.truncate",
               "os.chmod", "os.chown", "os.mkdir", "shutil.rmtree", "shutil.move", "os.utime")
# O_TRUNC empties a file even when it is opened read-only.
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_CREAT | os.O_APPEND

def guard(event, args):
    if event.startswith(BLOCKED):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event in PATH_EVENTS and not all(inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
        raise PermissionError(f"sandbox: {event} outside the working directory")
    if event == "open" and args[0] is not None and not isinstance(args[0], int) and not inside(args[0]):
        mode, flags = args[1] or "r", args[2] or 0
        if any(c in str(mode) for c in "wax+") or flags & WRITE_FLAGS:
            raise PermissionError("sandbox: writing outside the working directory")
        # The "open" event does not carry dir_fd, and the path events judge relative
        # paths against the working directory: a descriptor of an outside folder would
        # let `os.remove("f", dir_fd=fd)` past both checks.
        if os.path.isdir(args[0]):
            raise PermissionError("sandbox: opening a folder outside the working directory")

sys.addaudithook(guard)
source = open("program.py", encoding="utf-8").read()
exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
sys.stdout.flush()
print("\n" + token, flush=True)
'''


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 1 << 30  # address space; CPython itself needs ~30 MB
    file_bytes: int = 16 << 20
    open_files: int = 64
    processes: int = 1  # per user; as `nobody` the sandbox is the only one


@dataclass(frozen=True)
class RunResult:
    passed: bool
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str


@functools.cache
def interpreter(as_root: bool) -> tuple[str, bool]:
    """The Python that runs programs, and whether it can run as `nobody`.

    Our own interpreter may live where `nobody` cannot read (a pyenv under /root); the
    programs need only the standard library, so any system Python will do. Without
    one, the program runs as root, still under every other limit.
    """
    if not as_root:
        return sys.executable, False
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if candidate and _runs_as_nobody(candidate):
            return candidate, True
    log.warning("no Python that user nobody can run: sandboxed programs run as root "
                "(the process limit does not apply to root)")
    return sys.executable, False


def _runs_as_nobody(executable: str) -> bool:
    def drop() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    try:
        done = subprocess.run([executable, "-I", "-S", "-c", "import json"], preexec_fn=drop,
                              cwd="/", capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def run_python(source: str, limits: Limits = Limits()) -> RunResult:
    """Run `source` in a sandboxed interpreter; passed = it ran to the end and exited 0."""
    token = secrets.token_hex(16)
    workdir = Path(tempfile.mkdtemp(prefix="autojudge-sandbox-"))
    try:
        (workdir / "program.py").write_text(source, encoding="utf-8")
        (workdir / "runner.py").write_text(RUNNER, encoding="utf-8")
        executable, as_nobody = interpreter(os.geteuid() == 0)
        if as_nobody:
            os.chown(workdir, NOBODY, NOBODY)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            [executable, "-I", "-S", "runner.py"], cwd=workdir, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=lambda: _lock_down(limits, as_nobody), close_fds=True)
        timed_out = False
        try:
            out, err = proc.communicate((token + "\n").encode(), timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            out, err = proc.communicate()
        _kill_group(proc.pid)  # anything the program left behind in its group
        out_text = out.decode("utf-8", "replace")
        passed = (not timed_out and proc.returncode == 0
                  and out_text.rstrip("\n").endswith("\n" + token))
        return RunResult(passed, proc.returncode, timed_out, out_text[-4000:],
                         err.decode("utf-8", "replace")[-4000:])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _lock_down(limits: Limits, as_nobody: bool) -> None:
    """In the child, between fork and exec: isolate the network, drop rights, set limits."""
    if os.geteuid() == 0:
        _LIBC.unshare(CLONE_NEWNET)
    else:  # an unprivileged user may create a network namespace inside a user namespace
        _LIBC.unshare(CLONE_NEWUSER | CLONE_NEWNET)
    for name, value in ((resource.RLIMIT_CPU, limits.cpu_seconds),
                        (resource.RLIMIT_AS, limits.memory_bytes),
                        (resource.RLIMIT_FSIZE, limits.file_bytes),
                        (resource.RLIMIT_NOFILE, limits.open_files),
                        (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(name, (value, value))
    if as_nobody:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    # Last: the limit counts the user's processes, and setuid must not trip over it.
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass
