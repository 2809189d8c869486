"""Save frames as plain JPEG files: every N-th frame or every T seconds, per camera.

The JPEG from the wire is written as is (no decode, no re-encode). A file appears complete or
not at all: it is written under a temporary name, synced, then renamed. Names sort by capture
time and carry the camera id and the frame's sequence number.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import logging
import os
import re
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from framebus.common.bind_error import BindError
from framebus.common.cli_args import arg_type
from framebus.common.endpoint import EndpointError, parse_endpoint
from framebus.common.protocol import Frame, validate_camera_id
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.security import ExposureError, check_exposure
from framebus.common.shutdown import ShutdownSignals
from framebus.common.units import parse_duration, parse_size
from framebus.worker_node import flags
from framebus.worker_node.access import Access
from framebus.worker_node.sink import BaseSink, Driver, ReceiveOptions, ReceiverView
from framebus.worker_node.status_line import StatusLine
from framebus.worker_node.subscription import Subscription

log = logging.getLogger("worker_node.save")
command_log = logging.getLogger("worker_node")  # what the command itself says, under the name it always had

# What file_name() produces: retention must never delete anybody else's *_*_*.jpg. The
# sequence number is padded to 12 digits and may have up to 20 (it is a u64 on the wire).
MAX_NAME_CAMERA = 180  # longer ids are cut to 160 characters plus a hash of the whole id
_SAVED_NAME = re.compile(r"\d{8}T\d{6}\.\d{6}Z_[A-Za-z0-9_.+\-]+_\d{12,20}\.jpg")


@dataclass(frozen=True)
class SavePolicy:
    every_n: int = 0  # save frames whose sequence number reaches the next multiple of N
    every_s: float = 0.0  # or the first frame captured in each T-second slot
    keep_files: int = 0  # 0: unlimited
    keep_bytes: int = 0


class OutputDirectoryError(OSError):
    """The directory cannot take files; the message names it and says why."""


def why(exc: OSError) -> str:
    """An OSError in words, with what to check for the usual ones."""
    hints = {
        errno.EACCES: "no permission: check the directory's owner and mode, and the user this runs as",
        errno.EPERM: "not permitted: check the directory's owner, mode and attributes (chattr)",
        errno.EROFS: "the file system is mounted read-only",
        errno.ENOSPC: "the disk is full (--keep-bytes or --keep-files bound what is kept)",
        errno.EDQUOT: "the disk quota is used up",
        errno.ENOENT: "the directory is gone (removed, or its disk unmounted?)",
        errno.ENOTDIR: "a part of the path is a file, not a directory",
    }
    return hints.get(exc.errno or 0, exc.strerror or str(exc))


def check_writable(out: Path) -> None:
    """Make `out` (and its parents) and really write a file there: a directory that exists but
    takes no files would otherwise show as a worker that streams and saves nothing."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".framebus-write-test-", dir=out)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except FileExistsError:
        raise OutputDirectoryError(errno.ENOTDIR, f"cannot save to {out}: it is a file, not a directory") from None
    except OSError as exc:
        raise OutputDirectoryError(exc.errno, f"cannot save to {out}: {why(exc)}") from None


@dataclass
class WriteErrors:
    """Files not saved, per camera, since the last status line."""

    count: int = 0
    last: str = ""  # the last reason

    def __str__(self) -> str:
        return f"not saved {self.count} ({self.last})" if self.count else ""


def file_name(frame: Frame) -> str:
    """`20261125T183711.123456Z_cam1_000000000042.jpg`; '/' in derived stream ids becomes '+'."""
    h = frame.header
    seconds, ns = divmod(h.capture_ns, 1_000_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{ns // 1000:06d}Z"
    camera = validate_camera_id(h.camera).replace("/", "+")
    if len(camera) > MAX_NAME_CAMERA:  # the longest ids (259 characters) would pass 255 bytes
        camera = f"{camera[:160]}-{hashlib.sha256(h.camera.encode()).hexdigest()[:12]}"
    return f"{stamp}_{camera}_{h.seq:012d}.jpg"


class SaveSink(BaseSink):
    """Writes the frames that are due; a sink (worker_node.sink) that never ticks. `stop_after`
    files saved (0: no limit) ends the run."""

    def __init__(self, out: Path, policy: SavePolicy, stop_after: int = 0) -> None:
        if not (policy.every_n > 0) ^ (policy.every_s > 0):
            raise ValueError("choose exactly one of every_n and every_s")
        self._out = out
        self._policy = policy
        self._next_due: dict[str, int] = {}
        self._log = RateLimitedLog(log)
        self.errors: dict[str, WriteErrors] = {}  # since the last status line
        self.not_saved = 0  # all together
        check_writable(out)
        self._saved: deque[tuple[Path, int]] = deque(self._existing())
        self._bytes = sum(size for _, size in self._saved)
        self.count = 0
        self._stop_after = stop_after

    @property
    def done(self) -> bool:
        return bool(self._stop_after) and self.count >= self._stop_after

    def start(self, receiver: ReceiverView) -> None:
        p = self._policy
        command_log.info(
            "saving to %s (%s)", self._out, f"every {p.every_n} frames" if p.every_n else f"every {p.every_s:g} s"
        )

    def on_frame(self, sub: Subscription, frame: Frame) -> None:
        self.offer(frame)

    def close(self) -> None:
        command_log.info("saved %d files to %s", self.count, self._out)

    def take_notes(self) -> dict[str, WriteErrors]:
        """Files not saved per camera since the last call: for the status line."""
        errors, self.errors = self.errors, {}
        return errors

    def _existing(self) -> list[tuple[Path, int]]:
        """Files saved by earlier runs count against the retention limit too."""
        found = []
        for path in sorted(self._out.glob("*.jpg")):
            if not _SAVED_NAME.fullmatch(path.name):
                continue
            try:
                found.append((path, path.stat().st_size))
            except OSError:
                continue
        return found

    def _due(self, frame: Frame) -> bool:
        h = frame.header
        key = h.camera
        if self._policy.every_n:
            position, step = h.seq, self._policy.every_n
        else:
            step = int(self._policy.every_s * 1e9)
            position = h.capture_ns
        next_due = self._next_due.get(key, 0)
        if next_due - step <= position < next_due:
            return False  # (further below: the publisher restarted its count; save)
        # Aligned slots: a frame lost to conflation moves the save to the next one that
        # arrives, and savers on different hosts pick the same frames of a lossless stream.
        self._next_due[key] = (position // step + 1) * step
        return True

    def offer(self, frame: Frame) -> Path | None:
        """Save the frame if its camera is due; the path written, or None."""
        if not self._due(frame):
            return None
        path = self._out / file_name(frame)
        if not self._write(path, frame.jpeg, frame.header.camera):
            return None
        self.count += 1
        self._saved.append((path, len(frame.jpeg)))
        self._bytes += len(frame.jpeg)
        self._enforce_retention()
        return path

    def _write(self, path: Path, data: memoryview, camera: str) -> bool:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            return True
        except OSError as exc:
            problem = why(exc)
            if len(self.errors) >= 1024 and camera not in self.errors:
                self.errors.clear()  # camera ids come from the network: stay bounded
            errors = self.errors.setdefault(camera, WriteErrors())
            errors.count += 1
            errors.last = problem
            self.not_saved += 1
            self._log.warning(
                f"write-{exc.errno}",
                "cannot save %s: %s; frame skipped (%d not saved so far)",
                path,
                problem,
                self.not_saved,
            )
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return False

    def _enforce_retention(self) -> None:
        p = self._policy
        # The newest file always stays, even when it alone exceeds keep_bytes.
        while len(self._saved) > 1 and (
            (p.keep_files and len(self._saved) > p.keep_files) or (p.keep_bytes and self._bytes > p.keep_bytes)
        ):
            path, size = self._saved.popleft()
            self._bytes -= size
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                self._log.warning("retention", "cannot delete %s: %s", path, exc)


# ---------------------------------------------------------------------------- `worker-node save`


def _listen_endpoint(text: str) -> str:
    endpoint = parse_endpoint(text, bind=True)
    if endpoint.scheme == "tcp" and endpoint.port is None:
        raise EndpointError(f"'{endpoint}': give a fixed port (e.g. tcp://0.0.0.0:6000): capture nodes connect to it")
    return str(endpoint)


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    save = sub.add_parser(
        "save",
        help="save frames as JPEG files",
        description="Save every N-th frame or one frame every T seconds of each camera as a plain JPEG file.",
    )
    flags.add_nodes(save, node_required=False)
    save.add_argument(
        "--listen",
        type=arg_type(_listen_endpoint),
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="bind here for capture nodes that connect out (behind NAT), e.g. tcp://0.0.0.0:6000 (repeatable)",
    )
    save.add_argument(
        "--insecure",
        action="store_true",
        help="without keys, allow --listen on an address other hosts can reach (plaintext)",
    )
    save.add_argument("--out", type=Path, required=True, help="directory for the JPEG files")
    save.add_argument(
        "--pull", action="store_true", help="ask for each frame instead of subscribing (links slower than the stream)"
    )
    rate = save.add_mutually_exclusive_group()
    rate.add_argument(
        "--every-n",
        type=arg_type(flags.positive_int),
        metavar="N",
        help="save every N-th frame (exact on every-frame streams)",
    )
    rate.add_argument(
        "--every", type=arg_type(parse_duration), metavar="T", help="save one frame every T (e.g. 5s, 2m); default 1s"
    )
    save.add_argument(
        "--keep-files",
        type=arg_type(flags.positive_int),
        default=0,
        metavar="N",
        help="keep at most N files (oldest deleted)",
    )
    save.add_argument(
        "--keep-bytes",
        type=arg_type(parse_size),
        default=0,
        metavar="SIZE",
        help="keep at most SIZE bytes of files (e.g. 500M, 10G)",
    )
    save.add_argument(
        "--count", type=arg_type(flags.positive_int), default=0, metavar="N", help="stop after saving N files"
    )
    save.add_argument(
        "--duration", type=arg_type(parse_duration), default=0.0, metavar="T", help="stop after T (e.g. 30s, 1h)"
    )
    save.add_argument(
        "--status-interval",
        type=arg_type(parse_duration),
        default=5.0,
        metavar="T",
        help="print a status line per camera every T (default 5s)",
    )
    save.set_defaults(func=main)
    return save


def _listen_refused(args: argparse.Namespace, access: Access) -> str:
    """Why the --listen endpoints may not be bound as given ('' if they may)."""
    for endpoint in args.listen:
        try:
            exposed = check_exposure(
                "--listen",
                parse_endpoint(endpoint, bind=True),
                secured=access.keys is not None,
                insecure=args.insecure,
                fix="Give --key and --server-key",
            )
        except ExposureError as exc:
            return str(exc)
        if exposed:
            command_log.warning("INSECURE: --listen %s: no CURVE keys; frames come in plaintext from anyone", endpoint)
        if access.keys is not None and len(access.server_keys) != 1:
            return "--listen: give exactly one --server-key (the key of the nodes that connect in)"
    return ""


def main(args: argparse.Namespace) -> int:
    access = flags.access(args)
    if not args.node and not args.listen:
        command_log.error("save: give --node (a capture node to subscribe to) or --listen (for nodes that connect out)")
        return 2
    refused = _listen_refused(args, access)
    if refused:
        command_log.error("%s", refused)
        return 2
    policy = SavePolicy(
        every_n=args.every_n or 0,
        every_s=0.0 if args.every_n else (args.every or 1.0),
        keep_files=args.keep_files,
        keep_bytes=args.keep_bytes,
    )
    try:
        sink = SaveSink(args.out, policy, stop_after=args.count)  # really writes a file there first
    except OSError as exc:
        command_log.error("%s", exc.strerror or exc)
        return 2
    receive = ReceiveOptions(args.node, args.camera, pull=args.pull, listen=args.listen, access=access)
    status = StatusLine(args.status_interval, sink.take_notes)
    driver = Driver([sink, status], receive, window_s=args.status_interval, duration=args.duration)
    flags.serve_metrics_of(args, driver)
    try:
        driver.run(ShutdownSignals())
    except BindError as exc:
        command_log.error("--listen: %s", exc)
        return 2
    return 0
