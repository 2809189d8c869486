"""deploy/compose.yaml's services as an engine would run them, without an engine: one network
namespace host per service (tests/netns.py), named like it and resolvable by that name.

    with ComposeHosts(DEPLOY / "compose.yaml", DEPLOY / "Dockerfile", tmp_path) as compose:
        compose.up()                        # in depends_on order, waiting for healthy services
        compose.health("edge")              # the image's HEALTHCHECK, run in the service's host
        compose.service("saver").process    # a NodeProcess: its output, wait_for, stop

What stands in for what:
- The image's file system: the host's own, as an overlay (writes go to a tmpfs), with the
  final stage of the Dockerfile applied to it for real: COPY from the build context, ENV, RUN
  (as root, so `useradd` really makes the user), USER, WORKDIR. `COPY --from=build /opt/framebus`
  (the venv the build stage makes) becomes a link to the venv running these tests.
- A container: `chroot` into that overlay inside the service's namespace, as the image's user,
  with only the image's and the service's environment (`env -i`); compose `volumes` bind-mounted
  (named volumes start as a copy of the image's directory, as Docker does; a missing host
  directory is made by root, as Docker does); an /etc/hosts naming every service, as compose's
  DNS does.
Needs root (CI runs as root), iproute2 and coreutils.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from tests.netns import Host, Network
from tests.processes import NodeProcess, Processes, wait_until

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's, for images without one
VENV_PATH = "/opt/framebus"  # where the Dockerfile's build stage leaves the venv


def run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{shlex.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")


@dataclass
class Image:
    """What the final stage of the Dockerfile makes: a layer over the host's / (`layer`, a
    directory for overlayfs) and a run configuration."""

    layer: Path = Path()
    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    user: str = "root"
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    stopsignal: str = "SIGTERM"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """The final stage's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", "", dockerfile.read_text())
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            steps.append((keyword.upper(), rest.strip()))
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from + 1 :]


def expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), text)


def exec_form(text: str) -> list[str]:
    """CMD ["a", "b"] or the shell form CMD a b (run by /bin/sh -c)."""
    return list(json.loads(text)) if text.startswith("[") else ["/bin/sh", "-c", text]


class RootFs:
    """An overlay of the host's / (under the given lower layers; changes kept in a tmpfs) with
    /proc, /dev and /sys inside."""

    def __init__(self, where: Path, layers: tuple[Path, ...] = ()) -> None:
        self.base = where
        where.mkdir(parents=True)
        run(["mount", "-t", "tmpfs", "-o", "size=512m,mode=755", "framebus-test-root", str(where)])
        run(["mount", "--make-rprivate", str(where)])
        for part in ("upper", "work", "root"):
            (where / part).mkdir()
        self.upper = where / "upper"
        self.path = where / "root"
        lower = ":".join([*map(str, layers), "/"])
        options = f"lowerdir={lower},upperdir={self.upper},workdir={where / 'work'}"
        run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.path)])
        for special in ("/proc", "/dev", "/sys", *_mounts_under_python()):
            run(["mount", "--rbind", special, str(self.inside(special))])
            run(["mount", "--make-rslave", str(self.inside(special))])

    def unmount_root(self) -> None:
        """Keep only the changes (the upper layer), e.g. to use them as an image layer."""
        run(["umount", "-R", str(self.path)])

    def inside(self, path: str) -> Path:
        return self.path / path.lstrip("/")

    def bind(self, source: Path, target: str, read_only: bool) -> None:
        inside = self.inside(target)
        if inside.exists() and source.is_dir() != inside.is_dir():  # Docker refuses it too
            kinds = ("a directory", "a file") if source.is_dir() else ("a file", "a directory")
            raise ValueError(f"mounting {source} on {target}: {kinds[0]} onto {kinds[1]}: check the volume's path")
        if source.is_dir():
            inside.mkdir(parents=True, exist_ok=True)
        else:
            inside.parent.mkdir(parents=True, exist_ok=True)
            inside.touch()
        run(["mount", "--bind", str(source), str(inside)])
        if read_only:
            run(["mount", "-o", "remount,bind,ro", str(inside)])

    def close(self) -> None:
        subprocess.run(["umount", "-R", str(self.base)], capture_output=True)
        if subprocess.run(["mountpoint", "-q", str(self.base)]).returncode == 0:
            subprocess.run(["umount", "-R", "-l", str(self.base)], capture_output=True)


def build_image(dockerfile: Path, context: Path, where: Path) -> tuple[Image, RootFs]:
    """Apply the final stage of the Dockerfile to an overlay of the host's /, as `docker build`
    would on a base image; the image's layer is the overlay's upper directory."""
    root = RootFs(where)
    image = Image(layer=root.upper)
    try:
        for keyword, args in instructions(dockerfile):
            _apply(keyword, args, image, root, context)
        _open_path_to_python(root)
    finally:
        root.unmount_root()
    return image, root


def _apply(keyword: str, args: str, image: Image, root: RootFs, context: Path) -> None:
    if keyword == "ENV":
        for pair in shlex.split(args):
            name, _, value = pair.partition("=")
            image.env[name] = expand(value, image.env)
    elif keyword == "COPY":
        *sources, target = shlex.split(args)
        if sources[0] == "--from=build" and sources[1:] == [VENV_PATH]:
            root.inside(target).parent.mkdir(parents=True, exist_ok=True)
            root.inside(target).symlink_to(sys.prefix)  # the venv these tests run in
            return
        if sources[0].startswith("--"):
            raise ValueError(f"COPY {args}: this stand-in knows only COPY --from=build {VENV_PATH}")
        for source in sources:
            inside = root.inside(target)
            inside.parent.mkdir(parents=True, exist_ok=True)
            copy = shutil.copytree if (context / source).is_dir() else shutil.copy2
            copy(context / source, inside / Path(source).name if target.endswith("/") else inside)
    elif keyword == "RUN":
        run(["chroot", str(root.path), "/bin/sh", "-c", args])
    elif keyword == "USER":
        image.user = args
    elif keyword == "WORKDIR":
        image.workdir = args
        root.inside(args).mkdir(parents=True, exist_ok=True)
    elif keyword in ("CMD", "ENTRYPOINT"):
        setattr(image, keyword.lower(), exec_form(args))
    elif keyword == "HEALTHCHECK":
        image.healthcheck = exec_form(re.sub(r"^(--\S+\s+)*CMD\s+", "", args))
    elif keyword == "STOPSIGNAL":
        image.stopsignal = args
    elif keyword not in ("EXPOSE", "VOLUME", "ARG", "LABEL"):
        raise ValueError(f"{keyword} {args}: not known to this stand-in for an engine")


class Images:
    """Images built once for all the tests that run them (`docker build` with a cache)."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.built: dict[Path, tuple[Image, RootFs]] = {}

    def get(self, dockerfile: Path, context: Path) -> Image:
        key = dockerfile.resolve()
        if key not in self.built:
            self.built[key] = build_image(dockerfile, context, self.where / f"image{len(self.built)}")
        return self.built[key][0]

    def close(self) -> None:
        for _image, root in self.built.values():
            root.close()


def _python_paths() -> list[Path]:
    """Where the Python running the tests, its venv and the code it imports live."""
    return [Path(sys.prefix), Path(sys.executable).resolve(), *(Path(p) for p in sys.path if p)]


def _mounts_under_python() -> list[str]:
    """File systems other than / that hold _python_paths (an overlay of / does not show them)."""
    mounts = set()
    for path in _python_paths():
        while not os.path.ismount(path):
            path = path.parent
        if path != Path("/") and not str(path).startswith(("/proc", "/dev", "/sys")):
            mounts.add(str(path))
    return sorted(mounts)


def _open_path_to_python(root: RootFs) -> None:
    """The host's Python stands in for the image's, and may live under a directory the image's
    user cannot enter (/root here): open the way to it, in the overlay only."""
    bound = [Path(m) for m in _mounts_under_python()]  # the host's own directories: leave them be
    for target in _python_paths():
        for directory in target.parents:
            if any(directory == m or m in directory.parents for m in bound):
                continue
            inside = root.inside(str(directory))
            if inside.is_dir() and not inside.stat().st_mode & 0o001:
                inside.chmod(inside.stat().st_mode | 0o001)


def user_ids(root: RootFs, user: str) -> tuple[int, int]:
    """uid and gid of USER (a name or uid[:gid]) from the image's /etc/passwd."""
    name, _, group = user.partition(":")
    for line in root.inside("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if name in (fields[0], fields[2]):
            return int(fields[2]), int(group or fields[3])
    if name.isdigit():
        return int(name), int(group or name)
    raise ValueError(f"USER {user}: no such user in the image")


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

    def pid_1(self) -> int:
        """The host's pid of the container's PID 1, once it runs the container's command (before,
        it is still our chroot and env on their way there)."""
        assert self.process is not None
        unshare = self.process.proc.pid

        def running() -> int:
            if self.process.proc.poll() is not None:  # type: ignore[union-attr]
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
        service.pid_1()  # started, as `docker run -d` returns
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
