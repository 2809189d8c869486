"""What a new user's first `make demo` shows: the editable install prints no setuptools warning,
and make refuses an unsupported Python in one line before making anything (and does not reuse a
venv an unsupported Python made). Nothing is left that still imports the root packages by their
own names (tools/rename_imports.py). The wheel and the sdist: tests/test_install.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "framebus", "capture_node", "common", "worker_node")
BUILD_WARNING = re.compile(r"[Ww]arning:|setuptools|!!")  # pip's own "WARNING: ..." lines are the machine's pip.conf
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
OLD_PYTHONS = sorted(PYENV_ROOT.glob("versions/3.9.*/bin/python3"))  # the newest unsupported one


def source_copy(tmp_path: Path) -> Path:
    """The files a build reads, copied: a build writes build/ and *.egg-info beside them."""
    copy = tmp_path / "src"
    copy.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy / name)
    return copy


def pip(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # CI does not set it
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def build_warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if BUILD_WARNING.search(line)]


def test_the_editable_install_of_make_demo_prints_nothing(tmp_path: Path) -> None:
    """`make demo` runs `pip install -q -e .`: with -q, whatever is printed is a warning."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    output = pip(
        "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", "-e", str(source_copy(tmp_path))
    )
    assert build_warnings(output) == []


def test_no_code_imports_the_root_packages_by_their_own_names() -> None:
    """Installed, they exist only as framebus.common, ...; the rename script finds none left."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "rename_imports.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def make(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run make as a user would from a shell: not as a sub-make of the `make test` that runs this
    suite, whose MAKEFLAGS/MAKELEVEL would add "Entering directory" lines and pass its options on,
    and whose command-line variables (`make test-all` runs `make pytest VENV=.venv-3.10 ...`)
    reach this process's environment, where the Makefile's `VENV ?=` would take them."""
    parent_make = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "VENV", "PYTHON", "BIN", "PYTEST_ARGS")
    env = {k: v for k, v in os.environ.items() if k not in parent_make}
    return subprocess.run(["make", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def old_python() -> Path:
    if not OLD_PYTHONS:
        pytest.fail(
            f"no Python 3.9 under {PYENV_ROOT}/versions to try make with: `pyenv install 3.9` (this kind of machine has it)"
        )
    return OLD_PYTHONS[0]


def test_make_refuses_an_unsupported_python_in_one_line(tmp_path: Path, old_python: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for goal in ("demo", "test", "lint", "bench"):
        done = make(tmp_path, goal, f"PYTHON={old_python}")
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            f"Makefile:12: *** framebus needs Python 3.10 or newer, and {old_python} is 3.9: "
            "give another, e.g. make PYTHON=python3.12.  Stop."
        ]
        assert not (tmp_path / ".venv").exists(), "nothing is made with an unsupported Python"
    missing = make(tmp_path, "demo", "PYTHON=python3.99")
    assert missing.returncode == 2
    assert "and python3.99 is not found: give another" in missing.stderr


def test_a_venv_made_by_an_unsupported_python_is_made_again(tmp_path: Path, old_python: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    subprocess.run([str(old_python), "-m", "venv", "--without-pip", str(tmp_path / ".venv")], check=True, timeout=60)
    good = Path(sys.executable).resolve()
    done = make(tmp_path, ".venv/bin/python", f"PYTHON={good}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f".venv was made by Python 3.9: making it again with {good}"
    version = subprocess.run(
        [str(tmp_path / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == f"({sys.version_info[0]}, {sys.version_info[1]})"
