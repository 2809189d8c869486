"""deploy/kubernetes/'s objects, read as kustomize and a kubelet would, and their pods run without
a cluster: each pod a network-namespace host (tests/support/netns.py), each of its containers
the image's stand-in (tests/support/image_stand_in.py) running the manifest's args as PID 1.

    manifests = Manifests.load(DEPLOY / "kubernetes")          # resources + configMapGenerator
    secrets = secrets_from_docs(DOCS / "kubernetes.md", keys)  # what the docs' kubectl lines make
    with contextlib.closing(Pods(manifests, secrets, images, tmp_path)) as pods:
        relay = pods.add("framebus-relay-0", "framebus-relay")   # a pod of that workload
        relay.start(); relay.wait_ready()                       # init containers, then the container
        relay.stop()                                            # SIGTERM, as kubelet does

What stands in for what:
- kustomize: `resources` read in order, `configMapGenerator` files made into ConfigMaps (names
  without the hash suffix, as the manifests name them);
- kubelet: Secret and ConfigMap volumes laid out as its atomic writer does (each key a link into
  a `..data` directory; defaultMode, and with fsGroup the group and its read bit), emptyDirs
  writable by fsGroup, `subPath`, read-only mounts, a read-only root file system where the
  container asks for one, runAsUser/runAsGroup, `env`, the image's ENTRYPOINT with the
  container's `args` (a container `command` would replace the ENTRYPOINT: refused here), init
  containers run to completion first, the readiness probe's command run in the container;
- cluster DNS: a Service's name resolves to the pods its selector matches (headless Services).
A pod whose Secret or ConfigMap is missing fails to start, naming it, as kubelet does; that every
key and file a container uses exists is checked statically (tests/test_kubernetes.py).
Needs root (CI runs as root), iproute2 and coreutils.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.compose_hosts import Service
from tests.support.image_stand_in import Image, Images, RootFs, run
from tests.support.netns import Host, Network
from tests.support.processes import NodeProcess, Processes, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")
DEFAULT_MODE = 0o644  # a Secret's or ConfigMap's files, without defaultMode


@dataclass
class Manifests:
    """The objects `kubectl apply -k DIRECTORY` would send, in order."""

    directory: Path
    objects: list[dict[str, Any]] = field(default_factory=list)
    kustomization: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> Manifests:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        objects: list[dict[str, Any]] = []
        for resource in kustomization.get("resources", []):
            objects += [o for o in yaml.safe_load_all((directory / resource).read_text()) if o]
        for generator in kustomization.get("configMapGenerator", []):
            data = {}
            for item in generator.get("files", []):
                key, _, path = str(item).rpartition("=")
                data[key or Path(path).name] = (directory / path).read_text()
            objects.append(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}
            )
        return cls(directory, objects, kustomization)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for o in self.of_kind(kind):
            if o["metadata"]["name"] == name:
                return o
        raise KeyError(f"no {kind} named {name}")

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") in WORKLOADS]

    def workload(self, name: str) -> dict[str, Any]:
        for o in self.workloads():
            if o["metadata"]["name"] == name:
                return o
        raise KeyError(f"no workload named {name}")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"].get("labels", {})  # type: ignore[no-any-return]


def selects(service: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def secrets_from_docs(page: Path, keys_dir: Path) -> dict[str, dict[str, bytes]]:
    """Run the page's `framebus-keys generate` lines in keys_dir, then read what its `kubectl
    create secret generic NAME --from-file=[KEY=]PATH` lines would put in each Secret."""
    lines = [line.strip() for line in page.read_text().splitlines()]
    keys_cli = Path(sys.executable).parent / "framebus-keys"
    for line in lines:
        if line.startswith("framebus-keys generate "):
            argv = shlex.split(line.partition("#")[0])
            subprocess.run([str(keys_cli), *argv[1:]], cwd=keys_dir, check=True, capture_output=True)
    secrets: dict[str, dict[str, bytes]] = {}
    for line in lines:
        if not (line.startswith("kubectl ") and " create secret generic " in line):
            continue
        argv = shlex.split(line.partition("#")[0])
        name = argv[argv.index("generic") + 1]
        files = [a.removeprefix("--from-file=") for a in argv if a.startswith("--from-file=")]
        secrets[name] = {}
        for item in files:
            key, _, path = item.rpartition("=")
            secrets[name][key or Path(path).name] = (keys_dir / path).read_bytes()
    return secrets


def project(directory: Path, files: dict[str, bytes], mode: int, group: int | None) -> None:
    """A Secret's or ConfigMap's volume as kubelet's atomic writer writes it, at first and at
    each update: the files in a new timestamped directory, `..data` switched to it in one
    rename, each key a link through `..data` (links of keys no longer there removed); with
    fsGroup, the files belong to that group, which may read them."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for key, content in files.items():
        path = stamp / key
        path.write_bytes(content)
        os.chown(path, 0, group if group is not None else 0)
        path.chmod(mode | (0o440 if group is not None else 0))
    stamp.chmod(0o755)
    (directory / "..data_tmp").symlink_to(stamp.name)
    os.rename(directory / "..data_tmp", data)
    for link in directory.iterdir():
        if not link.name.startswith("..") and link.name not in files:
            link.unlink()
    for key in files:
        if not (directory / key).is_symlink():
            (directory / key).symlink_to(f"..data/{key}")
    if old is not None:
        shutil.rmtree(directory / old)
    directory.chmod(0o755)


def with_hostname(argv: list[str], name: str) -> list[str]:
    """A host's command (`ip netns exec NS ...`) in a UTS namespace of its own named `name`, as
    a pod's: its processes see the pod's name as their host name."""
    assert argv[:3] == ["ip", "netns", "exec"], argv
    set_name = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name]
    return [*argv[:4], *set_name, *argv[4:]]


@dataclass
class Pod:
    name: str
    workload: dict[str, Any]
    host: Host
    init: list[Service]
    main: Service
    processes: Processes

    @property
    def container(self) -> dict[str, Any]:
        return pod_spec(self.workload)["containers"][0]  # type: ignore[no-any-return]

    @property
    def process(self) -> NodeProcess:
        assert self.main.process is not None, f"pod {self.name} was not started"
        return self.main.process

    def start(self) -> NodeProcess:
        """Init containers one after another, each to exit 0; then the container."""
        for init in self.init:
            done = subprocess.run(init.argv(init.command()), capture_output=True, text=True, timeout=60)
            if done.returncode:
                said = (done.stdout + done.stderr).strip()
                raise AssertionError(f"pod {self.name}: init container {init.name} exited {done.returncode}: {said}")
        argv = self.main.argv(self.main.command(), pid_1=True)
        self.main.process = self.processes.start_argv(with_hostname(argv, self.name))
        self.main.pid_1(exited_ok=True)
        return self.main.process

    def probe(self) -> tuple[int, str]:
        """The readiness probe's command, in the container (as kubelet's exec probe)."""
        command = self.container["readinessProbe"]["exec"]["command"]
        timeout = self.container["readinessProbe"].get("timeoutSeconds", 1)
        done = subprocess.run(self.main.argv(command), capture_output=True, text=True, timeout=timeout + 30)
        return done.returncode, (done.stdout + done.stderr).strip()

    def wait_ready(self, timeout: float = 60) -> str:
        last: list[str] = [""]

        def ready() -> bool:
            if self.process.proc.poll() is not None:
                raise AssertionError(
                    f"pod {self.name} exited with {self.process.proc.returncode}:\n{self.process.output}"
                )
            code, last[0] = self.probe()
            return code == 0

        try:
            wait_until(ready, timeout, f"pod {self.name} ready", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last probe: {last[0]}\n{self.process.output}") from None
        return last[0]

    def stop(self) -> int:
        """What kubelet does to a pod scaled away: SIGTERM to the container's PID 1, SIGKILL
        after terminationGracePeriodSeconds; the exit status."""
        grace = float(pod_spec(self.workload).get("terminationGracePeriodSeconds", 30))
        return self.main.stop(grace)

    def rss_bytes(self) -> int:
        """Memory the container's processes hold now (what its memory limit counts, roughly)."""
        pids, total = [self.main.pid_1()], 0
        while pids:
            pid = pids.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue  # ended meanwhile
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) << 10 if "VmRSS" in status else 0  # type: ignore[union-attr]
            pids += [int(c) for c in children]
        return total

    def kill(self) -> int:
        """The container killed outright (SIGKILL to its PID 1: its whole PID namespace goes)."""
        os.kill(self.main.pid_1(), signal.SIGKILL)
        return self.process.wait_exit(10)


class Pods:
    """Pods of `manifests` with `secrets`, each on a host of its own (see the module's doc)."""

    def __init__(
        self, manifests: Manifests, secrets: dict[str, dict[str, bytes]], images: Images, workdir: Path
    ) -> None:
        self.manifests = manifests
        self.secrets = dict(secrets)  # update_secret changes this run's, not the caller's
        self.image: Image = images.get(DOCKERFILE, ROOT)
        self.workdir = workdir
        self.network = Network()
        self.processes = Processes()
        self.roots: list[RootFs] = []
        self.pods: dict[str, Pod] = {}
        self.projected: list[tuple[str, Path, int, int | None]] = []  # (Secret, its volume's directory, mode, group)

    def update_secret(self, name: str, files: dict[str, bytes]) -> None:
        """`kubectl apply` of a changed Secret, once kubelet has synced it into every pod that mounts it."""
        self.secrets[name] = files
        for secret, where, mode, group in self.projected:
            if secret == name:
                project(where, files, mode, group)

    def add(self, name: str, workload_name: str) -> Pod:
        """A pod of that workload, named `name` (its hostname). Services that select pods added
        so far resolve in it."""
        workload = self.manifests.workload(workload_name)
        spec = pod_spec(workload)
        if len(spec["containers"]) != 1:
            raise ValueError(f"{workload_name}: one container per pod here, not {len(spec['containers'])}")
        host = self.network.add_host(name)
        volumes = self._volumes(name, spec)
        init = [self._container(name, c, spec, host, volumes) for c in spec.get("initContainers", [])]
        main = self._container(name, spec["containers"][0], spec, host, volumes)
        pod = self.pods[name] = Pod(name, workload, host, init, main, self.processes)
        return pod

    def address(self, service_name: str) -> str:
        """What the Service's name resolves to: the address of the first pod it selects."""
        service = self.manifests.get("Service", service_name)
        for pod in self.pods.values():
            if selects(service, pod_labels(pod.workload)):
                return pod.host.address
        raise KeyError(f"Service {service_name} selects none of the pods {sorted(self.pods)}")

    def _hosts_file(self, name: str, host: Host) -> str:
        lines = ["127.0.0.1\tlocalhost", f"{host.address}\t{name}"]
        for service in self.manifests.of_kind("Service"):
            try:
                lines.append(f"{self.address(service['metadata']['name'])}\t{service['metadata']['name']}")
            except KeyError:
                pass  # selects no pod (yet): its name does not resolve, as in a cluster
        return "\n".join(lines) + "\n"

    def _volumes(self, pod: str, spec: dict[str, Any]) -> dict[str, Path]:
        """Each pod volume's directory, filled as kubelet fills it."""
        group = spec.get("securityContext", {}).get("fsGroup")
        out = {}
        for volume in spec.get("volumes", []):
            where = self.workdir / pod / "volumes" / volume["name"]
            if "secret" in volume:
                source = volume["secret"]
                name = source["secretName"]
                if name not in self.secrets:
                    raise ValueError(f"pod {pod}: secret {name!r} not found (volume {volume['name']})")
                project(where, self.secrets[name], source.get("defaultMode", DEFAULT_MODE), group)
                self.projected.append((name, where, source.get("defaultMode", DEFAULT_MODE), group))
            elif "configMap" in volume:
                source = volume["configMap"]
                try:
                    data = self.manifests.get("ConfigMap", source["name"])["data"]
                except KeyError:
                    raise ValueError(
                        f"pod {pod}: configmap {source['name']!r} not found (volume {volume['name']})"
                    ) from None
                files = {k: v.encode() for k, v in data.items()}
                project(where, files, source.get("defaultMode", DEFAULT_MODE), group)
            elif "emptyDir" in volume:
                where.mkdir(parents=True)
                os.chown(where, 0, group if group is not None else 0)
                where.chmod(0o2777 if group is None else 0o2775)
            else:
                raise ValueError(f"pod {pod}: volume {volume['name']}: only secret, configMap and emptyDir here")
            out[volume["name"]] = where
        return out

    def _container(
        self, pod: str, container: dict[str, Any], spec: dict[str, Any], host: Host, volumes: dict[str, Path]
    ) -> Service:
        if "command" in container:
            raise ValueError(
                f"pod {pod}: container {container['name']} sets `command`, which replaces the image's tini"
            )
        security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        user = (
            f"{security.get('runAsUser', self.image.user)}:{security.get('runAsGroup', security.get('runAsUser', 0))}"
        )
        env = {e["name"]: str(e["value"]) for e in container.get("env", [])}
        service_spec: dict[str, object] = {"command": list(container["args"]), "user": user, "environment": env}
        root = RootFs(self.workdir / pod / f"root-{container['name']}", (self.image.layer,))
        self.roots.append(root)
        root.inside("/etc/hosts").write_text(self._hosts_file(pod, host))
        root.inside("/etc/hostname").write_text(f"{pod}\n")
        for mount in container.get("volumeMounts", []):  # tests/test_kubernetes.py checks that they exist
            source = volumes[mount["name"]]
            if "subPath" in mount:
                source = (source / mount["subPath"]).resolve()
            read_only = mount.get("readOnly", False) or source.is_file() or (volumes[mount["name"]] / "..data").exists()
            root.bind(source, mount["mountPath"], read_only)
        if security.get("readOnlyRootFilesystem"):
            run(["mount", "-o", "remount,bind,ro", str(root.path)])
        return Service(f"{pod}/{container['name']}", service_spec, host, root, self.image)

    def close(self) -> None:
        self.processes.cleanup()
        self.network.close()
        for root in self.roots:
            root.close()


def ports_in(text: str) -> set[int]:
    """The TCP ports of every tcp://HOST:PORT in text."""
    return {int(port) for port in re.findall(r"tcp://[^\s:/]+:(\d+)", text)}
