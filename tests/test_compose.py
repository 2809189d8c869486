"""deploy/compose.yaml and the image's default command, run for real: each service's command,
volumes, environment and healthcheck in a network-namespace host named like it
(tests/support/compose_hosts.py stands in for the engine). A broken command, config or volume fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.compose_hosts import ComposeHosts
from tests.support.image_stand_in import Images
from tests.support.processes import wait_until
from tests.test_end_to_end import saved_files

# The first test builds the image (~20 s: apt-get for tini) before it runs three services.
pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
IMAGE_UID = 10001  # the Dockerfile's user
RELAYED = ("edge/cam1", "edge/cam2", "edge/cam1/faces")  # the relay's names; the last, the pool's results


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """deploy/Dockerfile's image, built once for this module's tests."""
    built = Images(tmp_path_factory.mktemp("images"))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def compose(images: Images, tmp_path: Path) -> Iterator[ComposeHosts]:
    with ComposeHosts(DEPLOY / "compose.yaml", images, DOCKERFILE, tmp_path) as hosts:
        yield hosts


def test_compose_services_save_frames_from_the_edge_by_its_name(compose: ComposeHosts, tmp_path: Path) -> None:
    """`docker compose up`: the edge becomes healthy, both savers reach it as tcp://edge:5555 and
    write frames of both cameras into their volumes, as the image's user; everything stops
    within its stop_grace_period."""
    compose.up()
    for saver in ("saver", "wan-saver"):
        assert compose.wait_healthy(saver).startswith("healthy: streaming")
        frames = tmp_path / "volumes" / compose.service(saver).spec["volumes"][0].split(":")[0]  # type: ignore[index]
        wait_until(lambda f=frames: set(saved_files(f)) == {"cam1", "cam2"}, 60, f"{saver}: frames of both cameras")
        assert {p.stat().st_uid for p in frames.iterdir()} == {IMAGE_UID}
    edge = compose.wait_healthy("edge")
    assert edge == "healthy: streaming cam1, cam2", edge
    assert compose.wait_healthy("pool").startswith("healthy: streaming")  # the member receives edge/cam1
    said: list[str] = []

    def pool_stream_flows() -> bool:  # the relay serves the edge's cameras and the pool's one result stream
        said[:] = [run_in(compose, "saver", ["worker-node", "describe", "--node", "tcp://relay:6000"])[1]]
        return all(re.search(rf"^\s*{camera}\s+streaming", said[0], re.M) for camera in RELAYED)

    try:
        wait_until(pool_stream_flows, 60, f"the relay's describe to list {RELAYED} streaming")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it said:\n{said[0] if said else ''}") from None
    for name in reversed(compose.order()):
        service = compose.service(name)
        grace = float(str(service.spec.get("stop_grace_period", "10s")).removesuffix("s"))
        assert service.stop(grace) == 0, service.process.output  # type: ignore[union-attr]


def test_a_saver_reaches_the_edge_by_service_name_only(compose: ComposeHosts) -> None:
    """The names resolve the way compose's DNS makes them, and nothing else does: the saver's
    host knows `edge`, and a name that is no service does not resolve."""
    saver = compose.service("saver")
    look_up = "import socket, sys; print(socket.gethostbyname(sys.argv[1]))"
    code, out = run_in(compose, "saver", ["python3", "-c", look_up, "edge"])
    assert code == 0 and out == compose.service("edge").host.address, out
    code, out = run_in(compose, "saver", ["python3", "-c", look_up, "no-such-service"])
    assert code != 0, out
    assert saver.host.address != compose.service("edge").host.address


def run_in(compose: ComposeHosts, name: str, argv: list[str]) -> tuple[int, str]:
    import subprocess

    done = subprocess.run(compose.service(name).argv(argv), capture_output=True, text=True, timeout=60)
    return done.returncode, (done.stdout + done.stderr).strip()


def broken(spec: dict[str, Any], where: Path, what: str) -> None:
    edge = spec["services"]["edge"]
    if what == "command typo":
        edge["command"][3] = "--metrics-prot"
    elif what == "wrong config":  # one that names keys this container does not have
        edge["volumes"] = ["./config/capture-edge1.toml:/etc/framebus/node.toml:ro"]
    elif what == "config missing":  # Docker makes a directory in its place, then cannot mount it on a file
        edge["volumes"] = [f"{where / 'no-such-node.toml'}:/etc/framebus/node.toml:ro"]
    elif what == "frames in a host directory":  # Docker makes it, owned by root: not the image's user's
        spec["services"]["saver"]["volumes"] = [f"{where / 'frames'}:/data"]
    else:  # metrics served where the healthcheck does not look
        edge["command"][4] = "9200"


@pytest.mark.parametrize(
    ("what", "said"),
    [
        ("command typo", r"unrecognized arguments: --metrics-prot"),
        ("wrong config", r"/etc/framebus/node\.toml: node\.key: .*keys/edge1\.key_secret"),
        ("config missing", r"no-such-node\.toml on /etc/framebus/node\.toml: a directory onto a file"),
        ("metrics elsewhere", r"unhealthy: no metrics at http://127\.0\.0\.1:9100"),
        ("frames in a host directory", r"(?s)saver exited with 2:.*cannot save to /data: no permission"),
    ],
)
def test_a_broken_service_fails_with_its_own_words(images: Images, tmp_path: Path, what: str, said: str) -> None:
    """What a broken compose file looks like here: one line that says what is wrong (the
    service's own, or the engine's for a volume), soon, not a timeout of the whole test."""
    spec = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    broken(spec, tmp_path, what)
    copy = tmp_path / "compose.yaml"
    copy.write_text(yaml.safe_dump(spec))
    with pytest.raises((AssertionError, ValueError)) as failure:
        with ComposeHosts(copy, images, DOCKERFILE, tmp_path, project_dir=DEPLOY) as hosts:
            for name in ("edge", "saver"):
                hosts.start(name)
                hosts.wait_healthy(name, timeout=20)
    assert re.search(said, str(failure.value)), failure.value


IMAGE_RUN = """
services:
  edge:                      # docker run -d --name edge -v edge-data:/data framebus
    build: {{ context: {root}, dockerfile: deploy/Dockerfile }}
    volumes: ["edge-data:/data"]
  viewer:                    # docker run -v viewer-data:/data framebus worker-node ...
    build: {{ context: {root}, dockerfile: deploy/Dockerfile }}
    volumes: ["viewer-data:/data"]
"""


def test_the_image_default_command_admits_only_allowed_workers(images: Images, tmp_path: Path) -> None:
    """`docker run framebus` with no command: a capture node on every address, over CURVE with
    keys it made in its volume at first start; a worker gets frames once the edge admits its
    key (docs/containers.md's steps), and not before."""
    spec = tmp_path / "run.yaml"
    spec.write_text(IMAGE_RUN.format(root=ROOT))
    with ComposeHosts(spec, images, DOCKERFILE, tmp_path) as hosts:
        edge = hosts.start("edge")
        public = edge.wait_for(r"node public key (\S+)").group(1)
        assert hosts.wait_healthy("edge") == "healthy: streaming cam1"
        code, out = run_in(hosts, "viewer", ["framebus-keys", "generate", "/data/keys", "--name", "viewer"])
        assert code == 0, out
        viewer_key = re.search(r"public key\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        node_key = tmp_path / "volumes" / "viewer-data" / "node.key"  # the operator copies the public key over
        node_key.write_bytes((tmp_path / "volumes" / "edge-data" / "keys" / "node.key").read_bytes())
        assert public in node_key.read_text()
        save = [
            "worker-node", "save", "--node", "tcp://edge:5555", "--out", "/data/frames",
            "--key", "/data/keys/viewer.key_secret", "--server-key", "/data/node.key",
        ]  # fmt: skip
        refused = hosts.processes.start_argv(hosts.service("viewer").argv(save))
        edge.wait_for(r"refused a connection from .*not in the allow-list", timeout=30)
        refused.stop()
        frames = tmp_path / "volumes" / "viewer-data" / "frames"
        assert not saved_files(frames)
        code, out = run_in(hosts, "edge", ["framebus-keys", "allow", "/data/allowed", viewer_key, "--name", "viewer"])
        assert code == 0, out
        admitted = hosts.processes.start_argv(hosts.service("viewer").argv(save))
        wait_until(lambda: saved_files(frames).get("cam1"), 60, "frames saved once the key is allowed")
        admitted.stop()
        assert hosts.service("edge").stop(timeout=10) == 0
        restarted = hosts.start("edge")  # the volume keeps the keys: the same node key after a restart
        assert restarted.wait_for(r"node public key (\S+)").group(1) == public


def test_a_container_stopped_while_it_starts_stops_at_once(compose: ComposeHosts) -> None:
    """`docker stop` right after `docker run`: the container's PID 1 passes SIGTERM on even
    before the node has its handlers (a bare PID 1 would ignore it until SIGKILL, 10 s on)."""
    compose.start("edge")
    assert compose.service("edge").stop(timeout=5) in (0, 143)  # 143: ended by SIGTERM before handling it


DEAD_CAMERA = """
[node]
control = "tcp://0.0.0.0:5555"
key = "/data/keys/node.key_secret"
allow = "/data/allowed"

[[camera]]
id = "door"
source = "rtsp://127.0.0.1:9/nobody-serves-this"
open_timeout = 1.0
"""


def test_the_healthcheck_says_unhealthy_while_no_camera_streams(images: Images, tmp_path: Path) -> None:
    """Healthy means a camera streaming, not a process alive: a node whose only camera is
    unreachable is unhealthy, and says which camera and why."""
    config = tmp_path / "node.toml"
    config.write_text(DEAD_CAMERA)
    spec = tmp_path / "run.yaml"
    spec.write_text(
        IMAGE_RUN.format(root=ROOT).replace(
            'volumes: ["edge-data:/data"]', f'volumes: ["edge-data:/data", "{config}:/etc/framebus/node.toml:ro"]'
        )
    )
    with ComposeHosts(spec, images, DOCKERFILE, tmp_path) as hosts:
        edge = hosts.start("edge")
        edge.wait_for(r"camera door: cannot open", timeout=60)
        code, said = hosts.health("edge")
        assert code == 1 and re.fullmatch(r"unhealthy: no camera streaming \(door \S+\)", said), said


def test_the_default_command_says_when_its_volume_is_not_its_users(images: Images, tmp_path: Path) -> None:
    """A host directory on /data that uid 10001 cannot write: one line that says what to do."""
    data = tmp_path / "root-owned"
    data.mkdir(mode=0o755)
    spec = tmp_path / "run.yaml"
    spec.write_text(IMAGE_RUN.format(root=ROOT).replace('"edge-data:/data"', f'"{data}:/data"'))
    with ComposeHosts(spec, images, DOCKERFILE, tmp_path) as hosts:
        edge = hosts.start("edge")
        assert edge.wait_exit(30) == 2
    assert edge.output == (
        "framebus-edge: /data is not writable by uid 10001: chown 10001 the host directory mounted there, "
        "or use a named volume"
    )
