"""The sandbox stops hostile generated programs and leaves the host untouched."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from autojudge.tasks.sandbox import Limits, run_python

FAST = Limits(wall_seconds=4.0, cpu_seconds=2)


def test_a_correct_program_passes_and_a_failing_assert_fails():
    assert run_python("x = sum(range(10))\nassert x == 45\nprint(x)", FAST).passed
    failed = run_python("assert 1 == 2", FAST)
    assert not failed.passed and "AssertionError" in failed.stderr


@pytest.mark.parametrize("name, source", [
    ("busy loop", "while True:\n    pass"),
    ("sleep", "import time\ntime.sleep(60)"),
])
def test_a_program_that_never_ends_is_stopped(name, source):
    start = time.perf_counter()
    result = run_python(source, FAST)
    assert not result.passed and result.returncode != 0
    assert time.perf_counter() - start < FAST.wall_seconds + 3


@pytest.mark.parametrize("name, source", [
    ("fork", "import os\nos.fork()"),
    ("fork bomb via shell", "import subprocess\nsubprocess.run(['sh', '-c', ':(){ :|:& };:'])"),
    ("system", "import os\nos.system('echo hi')"),
    ("thread", "import threading\nt = threading.Thread(target=print)\nt.start()\nt.join()"),
    ("ctypes fork", "import ctypes\nctypes.CDLL(None).fork()"),
    ("huge allocation", "x = bytearray(16 << 30)"),
    ("growing allocation", "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))"),
    ("huge file", "open('big', 'wb').write(b'x' * (64 << 20))"),
    ("socket", "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=2)"),
    ("exit 0 before the end", "import os\nos._exit(0)"),
    ("SystemExit(0)", "raise SystemExit(0)"),
])
def test_hostile_programs_fail(name, source):
    with socket.socket() as listener:  # a live port on the host the program must not reach
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        result = run_python(source.replace("PORT", str(listener.getsockname()[1])), FAST)
        with pytest.raises(socket.timeout):
            listener.accept()
    assert not result.passed, result


def test_files_outside_the_working_directory_are_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    os.chmod(tmp_path, 0o755)
    for source in (f"import os\nos.remove({str(victim / 'keep.txt')!r})",
                   f"import shutil\nshutil.rmtree({str(victim)!r})",
                   f"open({str(victim / 'keep.txt')!r}, 'w').write('gone')",
                   f"import os\nos.rename({str(victim / 'keep.txt')!r}, 'stolen.txt')"):
        assert not run_python(source, FAST).passed
    assert (victim / "keep.txt").read_text() == "keep"


@pytest.fixture
def writable_victim():
    """A folder and file that any user may change, so only the sandbox's own guard protects them."""
    folder = Path(tempfile.mkdtemp(prefix="autojudge-victim-", dir="/tmp"))
    (folder / "keep.txt").write_text("keep")
    os.chmod(folder, 0o777)
    os.chmod(folder / "keep.txt", 0o666)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("name, source", [
    ("remove", "os.remove(VICTIM + '/keep.txt')"),
    ("write", "open(VICTIM + '/keep.txt', 'w').write('gone')"),
    ("append", "open(VICTIM + '/keep.txt', 'a').write('more')"),
    ("truncate while reading", "os.open(VICTIM + '/keep.txt', os.O_RDONLY | os.O_TRUNC)"),
    ("remove through a folder descriptor", "os.remove('keep.txt', dir_fd=os.open(VICTIM, os.O_RDONLY))"),
    ("truncate through a folder descriptor",
     "os.open('keep.txt', os.O_WRONLY | os.O_TRUNC, dir_fd=os.open(VICTIM, os.O_RDONLY))"),
    ("rename through a folder descriptor",
     "fd = os.open(VICTIM, os.O_RDONLY)\nos.rename('keep.txt', 'moved.txt', src_dir_fd=fd, dst_dir_fd=fd)"),
    ("remove a pathlib path", "import pathlib\npathlib.Path(VICTIM, 'keep.txt').unlink()"),
    ("remove given a path object", "import pathlib\nos.remove(pathlib.Path(VICTIM, 'keep.txt'))"),
    ("rename a pathlib path", "import pathlib\npathlib.Path(VICTIM, 'keep.txt').rename('stolen.txt')"),
    ("symlink out, then write", "os.symlink(VICTIM, 'out')\nopen('out/keep.txt', 'w').write('gone')"),
])
def test_the_guard_alone_keeps_host_files_that_anyone_may_write(writable_victim, name, source):
    # The victim is writable by every user, so running as `nobody` does not protect it.
    program = f"import os\nVICTIM = {str(writable_victim)!r}\n" + source
    result = run_python(program, FAST)
    assert not result.passed and "PermissionError: sandbox:" in result.stderr, result
    assert sorted(p.name for p in writable_victim.iterdir()) == ["keep.txt"]
    assert (writable_victim / "keep.txt").read_text() == "keep"


def test_the_working_directory_is_usable_and_thrown_away():
    result = run_python("import os\nopen('f.txt', 'w').write('hi')\nprint(os.getcwd())", FAST)
    assert result.passed
    workdir = result.stdout.splitlines()[0]
    assert not os.path.exists(workdir)


def _namespaces_allowed() -> bool:
    import subprocess
    try:
        return subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _namespaces_allowed(), reason="this kernel forbids network namespaces here")
def test_the_program_sees_no_network_interface_but_loopback():
    result = run_python("print(open('/proc/net/dev').read())", FAST)
    assert result.passed
    interfaces = [line.split(":")[0].strip() for line in result.stdout.splitlines()[2:] if ":" in line]
    assert interfaces == ["lo"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to nobody")
def test_as_root_the_program_runs_as_nobody():
    result = run_python("import os\nprint(os.getuid())", FAST)
    assert result.passed and result.stdout.splitlines()[0] == "65534"
