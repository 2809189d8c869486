"""A stand-in for `docker build` and a container's file system, for tests that run the image's
commands without an engine (tests/support/compose_hosts.py).

The image is the final stage of a Dockerfile applied for real to an overlay of the host's own
file system (writes go to a tmpfs): COPY from the build context, ENV, RUN (as root, so
`useradd` and `apt-get install` really happen), USER, WORKDIR, ENTRYPOINT, CMD, HEALTHCHECK.
`COPY --from=build /opt/framebus` (the venv the build stage makes) becomes a link to the venv
running these tests. A container's root is an overlay of that layer. Needs root.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

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
