"""The package as a user gets it: `make dist` builds a wheel and an sdist without one warning;
each installs into a fresh venv and runs there, away from the checkout (a temp directory as the
working directory, no PYTHONPATH): capture-node's test picture -> worker-node save -> JPEG files.
Only `framebus` is installed at the top level, so no `common` of framebus shadows another's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from framebus.common import jpeg
from tests.support.processes import ROOT, NodeProcess, Processes

SAVED = re.compile(r"^\d{8}T\d{6}\.\d{6}Z_cam1_\d{12}\.jpg$")
# setuptools and build say "warning:"/"Warning:"/"!!"; pip's own "WARNING: ..." lines are the
# machine's pip.conf (an index location it ignores), not the build's.
BUILD_WARNING = re.compile(r"warning|Warning|!!|[Dd]eprecat")
JUNK = (
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".venv*",
    "dist",
    "build",
    "*.egg-info",
)


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path
    output: str


def tree_copy(destination: Path) -> Path:
    """What `make dist` reads: the files git knows (links kept as links), or in a tree that is
    not a checkout (an unpacked sdist) all of it but caches and build output."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        shutil.copytree(ROOT, destination, symlinks=True, ignore=shutil.ignore_patterns(*JUNK))
        return destination
    for name in filter(None, listed.stdout.decode().split("\0")):
        source, target = ROOT / name, destination / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted in the working tree, not yet in git
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return destination


def pip(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """This venv's pip, without PYTHONPATH: with the checkout on the path, pip run for another
    venv (--python) would take the checkout's framebus.egg-info as framebus installed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0 or not check, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """`make dist` in a copy of the tree, run with this test's interpreter and its `build`."""
    tree = tree_copy(tmp_path_factory.mktemp("tree") / "framebus")
    (tree / ".venv").mkdir()  # make's stamps only: BIN is this interpreter's
    env = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PYTHONDONTWRITEBYTECODE")
    }
    done = subprocess.run(
        ["make", "dist", f"PYTHON={sys.executable}", f"BIN={Path(sys.executable).parent}", f"VENV={tree / '.venv'}"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    (wheel,) = (tree / "dist").glob("framebus-*-py3-none-any.whl")
    (sdist,) = (tree / "dist").glob("framebus-*.tar.gz")
    return Dist(wheel, sdist, output)


@pytest.fixture(scope="module")
def wheelhouse(dist: Dist, request: pytest.FixtureRequest) -> Path:
    """framebus's dependencies (and setuptools, to build the sdist) as wheels in pytest's cache:
    taken from the package index the first time, offline after that."""
    house = Path(request.config.cache.mkdir("framebus-wheelhouse"))
    wanted = ["--find-links", house, "-d", house, dist.wheel, "setuptools>=68"]
    if pip("download", "--no-index", *wanted, check=False).returncode != 0:
        pip("download", *wanted)
    for ours in house.glob("framebus-*"):
        ours.unlink()  # installed from the file under test, never from here
    return house


@pytest.fixture(scope="module")
def git_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The README's `pip install git+URL`, with a local repository of the tree as the URL."""
    repo = tree_copy(tmp_path_factory.mktemp("git") / "framebus")
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "framebus"]):
        subprocess.run(["git", *step], cwd=repo, env=dict(os.environ, **who), check=True, timeout=60)
    return f"git+file://{repo}"


def fresh_venv(where: Path, artefact: Path | str, wheelhouse: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    pip("--python", python, "install", "-q", "--no-index", "--find-links", wheelhouse, artefact)
    return where / "bin"


def away_from_checkout(argv: list[str], cwd: Path) -> NodeProcess:
    """A command with nothing of the checkout on its path: no PYTHONPATH, a temp directory."""
    return NodeProcess(["env", "-u", "PYTHONPATH", "-u", "PYTHONHOME", *argv], cwd=cwd)


def test_make_dist_builds_without_a_warning(dist: Dist) -> None:
    assert [line for line in dist.output.splitlines() if BUILD_WARNING.search(line)] == []
    assert f"Successfully built {dist.sdist.name} and {dist.wheel.name}" in dist.output


def test_the_wheel_installs_only_framebus_with_its_data_files(dist: Dist) -> None:
    names = zipfile.ZipFile(dist.wheel).namelist()
    info = f"{dist.wheel.name.split('-py3')[0]}.dist-info"
    assert {name.split("/")[0] for name in names} == {"framebus", info}
    assert "framebus/worker_node/static/index.html" in names
    assert "framebus/worker_node/handlers/data/haarcascade_frontalface_default.xml" in names
    assert "framebus/capture_node/cli.py" in names
    assert not [name for name in names if "__pycache__" in name or name.startswith("framebus/tests")]


def test_the_sdist_is_a_tree_that_builds_and_tests(dist: Dist, tmp_path: Path) -> None:
    """The sdist holds the checkout's layout (framebus/ with copies where the checkout links),
    the tests and what they read; a few tests run from it unpacked."""
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python 3.12 warns without one
    with tarfile.open(dist.sdist) as archive:
        archive.extractall(tmp_path, **safe)  # type: ignore[arg-type]
    (tree,) = tmp_path.iterdir()
    for needed in ("pyproject.toml", "MANIFEST.in", "Makefile", "README.md", "docs/api.md", "tests/conftest.py",
                   "capture_node/cli.py", "framebus/common/protocol.py", "framebus/worker_node/static/index.html",
                   "tools/rename_imports.py", "deploy/demo.sh", "benchmarks/run.py"):  # fmt: skip
        assert (tree / needed).is_file(), f"{needed} is not in the sdist"
    assert not list(tree.rglob("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cli_help.py"],
        cwd=tree,
        env=dict(env, PYTHONPATH=str(tree)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("kind", ["wheel", "sdist", "git"])
def test_installed_it_captures_and_saves(
    kind: str, dist: Dist, wheelhouse: Path, request: pytest.FixtureRequest, nodes: Processes, tmp_path: Path
) -> None:
    artefact = request.getfixturevalue("git_url") if kind == "git" else getattr(dist, kind)
    bin_dir = fresh_venv(tmp_path / "venv", artefact, wheelhouse)
    where = tmp_path / "elsewhere"
    where.mkdir()

    imports = away_from_checkout(
        [str(bin_dir / "python"), "-I", "-c", "import framebus.common.protocol as p; print(p.__file__)"], where
    )
    assert imports.wait_exit(60) == 0, imports.output
    assert imports.output.startswith(str(tmp_path / "venv")), imports.output
    for generic in ("common", "capture_node", "worker_node"):
        probe = away_from_checkout([str(bin_dir / "python"), "-I", "-c", f"import {generic}"], where)
        assert probe.wait_exit(30) == 1
        assert f"No module named '{generic}'" in probe.output

    capture = away_from_checkout([str(bin_dir / "capture-node"), "--control", "tcp://127.0.0.1:*", "--width", "320", "--height", "240"], where)  # fmt: skip
    nodes.started.append(capture)
    control = capture.wait_for(r"control endpoint (\S+)", timeout=60).group(1)
    out = where / "saved"
    save = away_from_checkout([str(bin_dir / "worker-node"), "save", "--node", control, "--out", str(out), "--every-n", "1", "--count", "5"], where)  # fmt: skip
    nodes.started.append(save)
    assert save.wait_exit(60) == 0, save.output
    files = sorted(out.iterdir())
    assert len(files) == 5 and all(SAVED.match(f.name) for f in files), [f.name for f in files]
    for path in files:
        assert jpeg.decode_bgr(path.read_bytes()).shape == (240, 320, 3)
    capture.stop(timeout=15)  # how fast it stops is test_end_to_end's; here, that it stops cleanly
    assert capture.proc.returncode == 0, capture.output
    assert "Traceback" not in capture.output + save.output
