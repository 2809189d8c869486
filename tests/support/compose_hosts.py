"""deploy/compose.yaml's services as an engine would run them, without an engine: one network
namespace host per service (tests/support/netns.py), named like it and resolvable by that name.

    images = Images(tmp_dir)                # built once, used by every ComposeHosts
    with ComposeHosts(DEPLOY / "compose.yaml", images, DEPLOY / "Dockerfile", tmp_path) as compose:
        compose.up()                        # in depends_on order, waiting for healthy services
        compose.health("edge")              # the image's HEALTHCHECK, run in the service's container
        compose.service("saver").stop(5)    # `docker stop`: STOPSIGNAL to its PID 1, its exit status

What stands in for what:
- The image: tests/support/image_stand_in.py, the Dockerfile's final stage applied to an overlay of the
  host's own file system.
- A container: `chroot` into an overlay of that layer inside the service's network namespace,
  as the image's user, with only the image's and the service's environment (`env -i`), its
  command as PID 1 of a PID namespace of its own; compose `volumes` bind-mounted (named volumes
  start as a copy of the image's directory, owner included, and a missing host directory is
  made by root, as Docker does); an /etc/hosts naming every service, as compose's DNS does.
Needs root (CI runs as root), iproute2 and coreutils.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from tests.support.image_stand_in import Image, Images, RootFs, user_ids
from tests.support.netns import Host, Network
from tests.support.processes import NodeProcess, Processes, wait_until


@dataclass
class Service:
    name: str
    spec: dict[str, object]
    host: Host
    root: RootFs
    image: Image
    process: NodeProcess | None = None

    def environment(self) -> dict[str, str]:
        env = dict(self.image.env, HOSTNAME=self.name)
        given = self.spec.get("environment", {})
        if isinstance(given, list):
            given = dict(item.partition("=")[::2] for item in given)
        env.update({str(k): str(v) for k, v in given.items()})  # type: ignore[union-attr]
        if "PYTHONPATH" in os.environ:  # the checkout under test, when it is not the venv's
            env.setdefault("PYTHONPATH", os.environ["PYTHONPATH"])
        return env

    def argv(self, command: list[str], pid_1: bool = False) -> list[str]:
        """command run in this service's container: as its PID 1, in a PID namespace of its own
        (a PID 1 ignores signals it has no handler for), or beside it, as `docker exec` does."""
        uid, gid = user_ids(self.root, str(self.spec.get("user", self.image.user)))
        env = [f"{k}={v}" for k, v in self.environment().items()]
        workdir = str(self.spec.get("working_dir", self.image.workdir))
        chroot = ["chroot", f"--userspec={uid}:{gid}", f"--groups={gid}", str(self.root.path)]
        pid_namespace = ["unshare", "--pid", "--fork", "--kill-child", f"--mount-proc={self.root.path}/proc"]
        return self.host.command(
            [*(pid_namespace if pid_1 else []), *chroot, "env", "-i", "-C", workdir, *env, *command]
        )

    def command(self) -> list[str]:
        """ENTRYPOINT + CMD, or the service's command in place of CMD."""
        given = self.spec.get("command")
        if given is None:
            return [*self.image.entrypoint, *self.image.cmd]
        command = shlex.split(given) if isinstance(given, str) else [str(x) for x in given]  # type: ignore[union-attr]
        return [*self.image.entrypoint, *command]

    def pid_1(self, exited_ok: bool = False) -> int:
        """The host's pid of the container's PID 1, once it runs the container's command (before,
        it is still our chroot and env on their way there). With `exited_ok`, -1 for a command
        that has already ended (as `docker run -d` returns for a container that exits at once)."""
        assert self.process is not None
        unshare = self.process.proc.pid

        def running() -> int:
            if self.process.proc.poll() is not None:  # type: ignore[union-attr]
                if exited_ok:
                    return -1
                raise AssertionError(f"service {self.name} exited:\n{self.process.output}")  # type: ignore[union-attr]
            try:
                child = int(Path(f"/proc/{unshare}/task/{unshare}/children").read_text().split()[0])
                argv0 = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].decode()
            except (OSError, IndexError, ValueError):
                return 0
            return child if Path(argv0).name not in ("unshare", "chroot", "env") else 0

        return int(wait_until(running, 30, f"service {self.name}'s command to start"))  # type: ignore[arg-type]

    def stop(self, timeout: float) -> int:
        """`docker stop`: the image's STOPSIGNAL to the container's PID 1, then its exit status."""
        assert self.process is not None
        os.kill(self.pid_1(), signal.Signals[self.image.stopsignal])
        return self.process.wait_exit(timeout)


class ComposeHosts:
    def __init__(
        self, compose_file: Path, images: Images, dockerfile: Path, workdir: Path, project_dir: Path | None = None
    ) -> None:
        self.images = images
        self.file = compose_file
        self.project_dir = project_dir or compose_file.parent  # relative paths start here, as in compose
        self.spec = yaml.safe_load(compose_file.read_text())
        self.dockerfile = dockerfile
        self.workdir = workdir
        self.network = Network()
        self.processes = Processes()
        self.services: dict[str, Service] = {}
        self.roots: list[RootFs] = []
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        specs: dict[str, dict[str, object]] = self.spec["services"]
        hosts = {name: self.network.add_host(name) for name in specs}
        hosts_file = "127.0.0.1\tlocalhost\n" + "".join(f"{h.address}\t{name}\n" for name, h in hosts.items())
        for name, spec in specs.items():
            build = spec.get("build", {})
            context = (self.project_dir / build.get("context", ".")).resolve()  # type: ignore[union-attr]
            dockerfile = context / build.get("dockerfile", "Dockerfile")  # type: ignore[union-attr]
            if dockerfile.resolve() != self.dockerfile.resolve():
                raise ValueError(f"service {name}: builds {dockerfile}, not {self.dockerfile}")
            image = self.images.get(dockerfile, context)
            root = RootFs(self.workdir / f"container-{name}", (image.layer,))
            self.roots.append(root)
            self.services[name] = service = Service(name, spec, hosts[name], root, image)
            root.inside("/etc/hosts").write_text(hosts_file)
            root.inside("/etc/hostname").write_text(f"{name}\n")
            for volume in spec.get("volumes", []):  # type: ignore[union-attr]
                self._mount(service, str(volume), image)

    def _mount(self, service: Service, volume: str, image: Image) -> None:
        source, target, *options = volume.split(":")
        read_only = "ro" in options
        if source.startswith((".", "/", "~")):  # a host path, relative to the compose file
            host_path = (self.project_dir / source).resolve()
            if not host_path.exists():
                host_path.mkdir(parents=True)  # Docker makes a missing one, owned by root
        else:  # a named volume: starts as a copy of what the image has there, owner included
            host_path = self.workdir / "volumes" / source
            if not host_path.exists():
                image_dir = service.root.inside(target)
                if image_dir.is_dir():
                    shutil.copytree(image_dir, host_path, symlinks=True)
                    owner = image_dir.stat()
                    os.chown(host_path, owner.st_uid, owner.st_gid)
                else:
                    host_path.mkdir(parents=True)
        service.root.bind(host_path, target, read_only)

    def service(self, name: str) -> Service:
        return self.services[name]

    def order(self) -> list[str]:
        """Services in start order: each after the ones it depends on."""
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                raise ValueError(f"depends_on cycle: {' -> '.join((*path, name))}")
            if name not in done:
                for dependency in self._depends_on(name):
                    visit(dependency, (*path, name))
                done.append(name)

        for name in self.services:
            visit(name, ())
        return done

    def _depends_on(self, name: str) -> dict[str, str]:
        given = self.services[name].spec.get("depends_on", {})
        if isinstance(given, list):
            return {dependency: "service_started" for dependency in given}
        return {k: v.get("condition", "service_started") for k, v in given.items()}  # type: ignore[union-attr]

    def start(self, name: str) -> NodeProcess:
        service = self.services[name]
        service.process = self.processes.start_argv(service.argv(service.command(), pid_1=True))
        service.pid_1(exited_ok=True)  # started (or already ended), as `docker run -d` returns
        return service.process

    def health(self, name: str) -> tuple[int, str]:
        """Run the image's healthcheck in the service's container: its status and output."""
        service = self.services[name]
        if not service.image.healthcheck:
            raise ValueError(f"service {name}: the image has no HEALTHCHECK")
        result = subprocess.run(service.argv(service.image.healthcheck), capture_output=True, text=True, timeout=30)
        return result.returncode, (result.stdout + result.stderr).strip()

    def wait_healthy(self, name: str, timeout: float = 60) -> str:
        """Poll the healthcheck (as the engine does, more often) until it passes; fails at once
        if the service exits."""
        last: list[str] = []

        def healthy() -> bool:
            process = self.services[name].process
            if process is not None and process.proc.poll() is not None:
                raise AssertionError(f"service {name} exited with {process.proc.returncode}:\n{process.output}")
            code, output = self.health(name)
            last[:] = [output]
            return code == 0

        try:
            wait_until(healthy, timeout, f"service {name} healthy", interval=0.5)
        except AssertionError as exc:
            process = self.services[name].process
            raise AssertionError(f"{exc}; last check: {last}\n{process.output if process else ''}") from None
        return last[0]

    def up(self) -> None:
        """Start every service in order; wait for those another service needs healthy."""
        needed_healthy = {d for n in self.services for d, c in self._depends_on(n).items() if c == "service_healthy"}
        for name in self.order():
            self.start(name)
            if name in needed_healthy:
                self.wait_healthy(name)

    def close(self) -> None:
        self.processes.cleanup()
        self.network.close()
        for root in self.roots:
            root.close()

    def __enter__(self) -> ComposeHosts:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
