"""`worker-node save --out DIR` with a directory that cannot take files: at start, one line that
names the directory and why, exit status 2, nothing left running. At run time (disk full,
directory removed), each failure names the file, the log is rate-limited, and the status line
says how many files were not saved and why. Real worker processes, real file systems (a
read-only and a full tmpfs), a real user without the privilege to write there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import NodeProcess, Processes, wait_until

# Root without its capabilities, writing into directories owned by nobody (65534): refused as any
# unprivileged user is. Not `setpriv --reuid=65534` itself: nobody cannot enter /root, where
# pyenv's interpreters (and their libpython) live on the test machines.
UNPRIVILEGED = ["setpriv", "--securebits=+noroot,+noroot_locked", "--bounding-set=-all", "--inh-caps=-all"]
NOBODY = 65534


def owned_by_nobody(directory: Path) -> Path:
    directory.chmod(0o755)  # others may enter and read it, not write
    shutil.chown(directory, NOBODY, NOBODY)
    return directory


def start_save(nodes: Processes, out: Path, *prefix: str, node: str = "tcp://127.0.0.1:9") -> NodeProcess:
    argv = [*prefix, sys.executable, "-m", "worker_node", "save", "--node", node, "--out", str(out)]
    return nodes.start_argv([*argv, "--every-n", "1", "--status-interval", "1s"])


def one_error(worker: NodeProcess) -> str:
    """The worker's only line at ERROR; it must have exited 2 within seconds."""
    assert worker.wait_exit(20) == 2, worker.output
    errors = [line for line in worker.output.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in worker.output, worker.output
    return errors[0].split(": ", 1)[1]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "ro"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_read_only_file_system(nodes: Processes, read_only: Path) -> None:
    assert (
        one_error(start_save(nodes, read_only)) == f"cannot save to {read_only}: the file system is mounted read-only"
    )


def test_a_directory_this_user_may_not_write(nodes: Processes, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    out.mkdir()
    why = one_error(start_save(nodes, owned_by_nobody(out), *UNPRIVILEGED))
    assert (
        why == f"cannot save to {out}: no permission: check the directory's owner and mode, and the user this runs as"
    )


def test_a_parent_this_user_may_not_write(nodes: Processes, tmp_path: Path) -> None:
    out = owned_by_nobody(tmp_path) / "new" / "saved"
    assert one_error(start_save(nodes, out, *UNPRIVILEGED)).startswith(f"cannot save to {out}: no permission")


def test_a_file_instead_of_a_directory(nodes: Processes, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    out.write_text("not a directory")
    assert one_error(start_save(nodes, out)) == f"cannot save to {out}: it is a file, not a directory"
    assert out.read_text() == "not a directory"


@pytest.fixture
def camera(nodes: Processes) -> str:
    _, control = nodes.capture("--width", "320", "--height", "240", "--fps", "10")
    return control


def not_saved(worker: NodeProcess, start: int) -> re.Match[str]:
    """The status line's count of files not saved (since the last line) and why."""
    return worker.wait_for(r"^cam1 .* not saved (\d+) \((.*)\)$", 20, start=start)


def test_a_disk_that_fills_up_at_run_time(nodes: Processes, camera: str, tmpfs: Callable[[str], Path]) -> None:
    out = tmpfs("256k") / "saved"
    worker = start_save(nodes, out, node=camera)
    m = not_saved(worker, 0)
    assert int(m.group(1)) >= 1 and m.group(2).startswith("the disk is full"), m.group(0)
    failure = worker.wait_for(
        rf"WARNING worker_node\.save: cannot save ({re.escape(str(out))}/\S+\.jpg): the disk is full"
    )
    assert Path(failure.group(1)).parent == out  # names the file
    not_saved(worker, len(worker.lines))  # still failing, still shown
    warnings = [line for line in worker.output.splitlines() if "cannot save" in line]
    assert len(warnings) <= 3, warnings  # rate-limited: one line per 5 s
    for saved in out.glob("*.jpg"):  # room again: saving resumes and the status line is clean
        saved.unlink()
    seen = len(worker.lines)
    worker.wait_for(r"^cam1 +streaming .*received \d+ *$", 20, start=seen)
    assert worker.proc.poll() is None and "Traceback" not in worker.output
    assert worker.stop() < 2.0 and worker.proc.returncode == 0


def test_a_directory_removed_at_run_time(nodes: Processes, camera: str, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    worker = start_save(nodes, out, node=camera)
    wait_until(lambda: list(out.glob("*.jpg")), 20, "files saved")
    shutil.rmtree(out)
    m = not_saved(worker, len(worker.lines))
    assert m.group(2) == "the directory is gone (removed, or its disk unmounted?)", m.group(0)
    worker.wait_for(rf"cannot save {re.escape(str(out))}/\S+\.jpg: the directory is gone")
    assert not out.exists(), "the worker must not make the directory again (its disk may be unmounted)"
    assert worker.stop() < 2.0 and worker.proc.returncode == 0
