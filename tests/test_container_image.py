"""deploy/Dockerfile built and run by a real engine: podman (Debian's), on a base image made by
debootstrap (deploy/build-image.sh; no image registry is reachable here). The same steps as
docs/containers.md: an edge container with the image's default command, a worker container that
reaches it by name, keys exchanged with `podman exec`, the healthcheck, `podman stop`."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import wait_until
from tests.test_end_to_end import saved_files

# The first build makes the base image with debootstrap and installs the wheels: 12 min here.
pytestmark = pytest.mark.timeout(1800)
ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
TAG = "localhost/framebus-test"
BASE = "localhost/framebus-base:bookworm"  # what build-image.sh makes
ENGINE_ENV = dict(os.environ, CONTAINERS_CONF=str(DEPLOY / "podman" / "containers.conf"))
# What the image adds to its base, measured 2026-11-29: 254 MB (the venv: OpenCV 153, NumPy 73,
# aiohttp, rich, pyzmq...). Growing past this bound needs a reason.
MAX_ADDED_MB = 270


def podman(*args: str, timeout: float = 120, check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["podman", *args], env=ENGINE_ENV, capture_output=True, text=True, timeout=timeout, input=stdin
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: status {done.returncode}\n{done.stderr[-3000:]}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image() -> str:
    """Built by deploy/build-image.sh, as a user here would (layers cached between runs)."""
    done = subprocess.run(
        [str(DEPLOY / "build-image.sh"), TAG], env=ENGINE_ENV, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, f"deploy/build-image.sh failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return TAG


class Engine:
    """Containers, volumes and one network for a test, all removed after it."""

    def __init__(self) -> None:
        self.prefix = f"fbtest{os.getpid()}"
        self.network = podman("network", "create", f"{self.prefix}-net")
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def volume(self, name: str) -> str:
        self.volumes.append(f"{self.prefix}-{name}")
        return self.volumes[-1]

    def run(self, name: str, *args: str, detach: bool = True, volume: str = "") -> str:
        """`podman run` on this test's network, reachable by `name` (a network alias)."""
        container = f"{self.prefix}-{name}"
        self.containers.append(container)
        options = ["--name", container, "--network", self.network, "--network-alias", name]
        options += ["--health-interval", "disable"]  # no systemd here to time checks: run them by hand
        options += ["-v", f"{self.volume(volume)}:/data"] if volume else []
        podman("run", "-d" if detach else "--rm", *options, *args, timeout=300)
        return container

    def mountpoint(self, volume: str) -> Path:
        return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", f"{self.prefix}-{volume}"))

    def close(self) -> None:
        for container in self.containers:
            podman("rm", "-f", "-t", "0", container, check=False)
        for volume in self.volumes:
            podman("volume", "rm", "-f", volume, check=False)
        podman("network", "rm", "-f", self.network, check=False)


@pytest.fixture
def engine() -> Iterator[Engine]:
    made = Engine()
    try:
        yield made
    finally:
        made.close()


def healthy(container: str) -> bool:
    """The image's HEALTHCHECK, run by the engine (podman prints nothing when it passes)."""
    done = subprocess.run(["podman", "healthcheck", "run", container], env=ENGINE_ENV, capture_output=True, timeout=60)
    return done.returncode == 0


def size_mb(name: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", name)) / 1e6


def test_the_image_holds_what_the_nodes_need_and_runs_as_its_user(image: str) -> None:
    added = size_mb(image) - size_mb(BASE)
    print(f"\nimage {size_mb(image):.0f} MB: base {size_mb(BASE):.0f} MB + framebus {added:.0f} MB")
    assert added <= MAX_ADDED_MB, f"the image adds {added:.0f} MB to its base; it added 254 MB when measured"
    found = podman(
        "run", "--rm", image, "sh", "-c", "id -u; command -v gcc cc pip pip3; ls /opt/framebus/lib/python3*/site-packages"
    )  # fmt: skip
    uid, *rest = found.splitlines()
    assert uid == "10001"
    assert not [line for line in rest if line.startswith("/")], f"build tools in the image: {rest}"
    assert not {"pip", "setuptools"} & set(rest)


def test_the_default_command_serves_a_worker_that_reaches_it_by_name(image: str, engine: Engine) -> None:
    """docs/containers.md step by step: run the edge, read its public key, make the worker's
    key pair, admit it with `podman exec`, run the worker against tcp://edge:5555; healthy;
    stopped by `podman stop` at once, with status 0."""
    edge = engine.run("edge", image, volume="edge-data")
    public = wait_until(lambda: re.search(r"node public key (\S+)", podman("logs", edge)), 60, "the edge's key")
    wait_until(lambda: healthy(edge), 60, "the edge healthy")
    out = podman(
        "run",
        "--rm",
        "-v",
        f"{engine.volume('viewer-data')}:/data",
        image,
        *"framebus-keys generate /data/keys --name viewer".split(),
    )
    viewer_key = re.search(r"public key\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    node_key = podman("exec", edge, "cat", "/data/keys/node.key")
    assert public.group(1) in node_key  # type: ignore[union-attr]
    (engine.mountpoint("viewer-data") / "node.key").write_text(node_key + "\n")  # the operator copies it over
    podman("exec", edge, "framebus-keys", "allow", "/data/allowed", viewer_key, "--name", "viewer")
    viewer = engine.run(
        "viewer", "-v", f"{engine.volume('viewer-data')}:/data", image,
        "worker-node", "save", "--node", "tcp://edge:5555", "--out", "/data/frames", "--every", "0.5s",
        "--key", "/data/keys/viewer.key_secret", "--server-key", "/data/node.key", "--metrics-port", "9100",
    )  # fmt: skip
    frames = engine.mountpoint("viewer-data") / "frames"
    wait_until(lambda: len(saved_files(frames).get("cam1", [])) >= 3, 60, "frames saved by the worker container")
    wait_until(lambda: healthy(viewer), 30, "the worker healthy")
    for container in (viewer, edge):
        start = time.monotonic()
        podman("stop", "-t", "10", container)
        assert time.monotonic() - start < 5, f"{container} took {time.monotonic() - start:.1f} s to stop"
        assert podman("inspect", "--format", "{{.State.ExitCode}}", container) == "0", podman("logs", container)
