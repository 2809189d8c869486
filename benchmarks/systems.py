"""Starting one system (framebus or a peer) with its sender and N consumers, and stopping it.

A Deployment knows which process plays which role (sender, consumer, broker) so that CPU
and memory are read per role, and where the consumers' records and the sender's log land.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.processes import CaptureNodeProcess, Helper, agent

SYSTEMS = ("framebus", "imagezmq", "netgear", "stack")
LABELS = {
    "framebus": "framebus",
    "imagezmq": "imagezmq (PUB/SUB)",
    "netgear": "vidgear NetGear (PUB/SUB)",
    "stack": "Manager().list() stack",
}
READY_TIMEOUT_S = 90.0  # 16 consumers importing OpenCV on 2 busy cores take a while


@dataclass
class Deployment:
    system: str
    senders: list[Helper | CaptureNodeProcess]
    consumers: list[Helper]
    pids: dict[str, list[int]]  # role -> processes: "sender", "consumer", "broker", "other"
    records: list[Path]
    sent_log: Path | None = None  # peers log what they sent; framebus is counted by seq
    modes: list[str] = field(default_factory=list)  # each consumer's mode, in order

    def stop(self) -> None:
        """Consumers first (they write their records on SIGTERM), then the senders."""
        for helper in self.consumers:
            helper.stop()
        for sender in self.senders:
            sender.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deploy(
    system: str,
    clip: Path,
    mode: str,
    consumers: int,
    work: Path,
    fanout: bool = False,
    modes: list[str] | None = None,
) -> Deployment:
    """Start a system and wait until every consumer has its first frame. `modes` gives each
    framebus consumer its own mode (the soak runs a fast and a slow one on one node)."""
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{system}-{'fanout' if fanout else mode}-{consumers}"
    records = [work / f"{tag}-consumer{i}.json" for i in range(consumers)]
    modes = modes or [mode] * consumers
    sent = work / f"{tag}-sent.json"
    started: list[Helper | CaptureNodeProcess] = []
    try:
        if system == "framebus":
            node = CaptureNodeProcess(clip, work, f"{tag}-capture-node")
            started.append(node)
            control = node.wait_streaming()
            cons = [
                Helper(
                    f"{tag}-consumer{i}",
                    agent("receive", "framebus", "--node", control, "--mode", modes[i], "--out", str(r)),
                    work,
                )
                for i, r in enumerate(records)
            ]
            dep = Deployment(system, [node], cons, {"sender": [node.pid]}, records)
        elif system == "imagezmq":
            sender = Helper(f"{tag}-sender", agent("send", "imagezmq", "--clip", str(clip), "--out", str(sent)), work)
            started.append(sender)
            endpoint = sender.wait_for("endpoint")
            cons = [
                Helper(
                    f"{tag}-consumer{i}",
                    agent("receive", "imagezmq", "--endpoint", endpoint, "--mode", mode, "--out", str(r)),
                    work,
                )
                for i, r in enumerate(records)
            ]
            dep = Deployment(system, [sender], cons, {"sender": [sender.pid]}, records, sent)
        elif system == "netgear":
            ports = [free_port() for _ in records]
            extra = ["--multiclient"] if fanout else []
            cons = [
                Helper(
                    f"{tag}-consumer{i}",
                    agent("receive", "netgear", "--port", str(p), "--mode", mode, "--out", str(r), *extra),
                    work,
                )
                for i, (p, r) in enumerate(zip(ports, records, strict=True))
            ]
            started.extend(cons)
            for c in cons:  # NetGear receivers bind, its sender connects
                c.wait_for("bound", READY_TIMEOUT_S)
            port_list = ",".join(str(p) for p in ports)
            sender = Helper(
                f"{tag}-sender",
                agent("send", "netgear", "--clip", str(clip), "--ports", port_list, "--out", str(sent), *extra),
                work,
            )
            started.append(sender)
            dep = Deployment(system, [sender], cons, {"sender": [sender.pid]}, records, sent)
        elif system == "stack":
            if consumers != 1:
                raise ValueError("the stack recipe hands each frame to one reader: no fan-out")
            launcher = Helper(
                f"{tag}-launcher",
                agent("stack", "--clip", str(clip), "--mode", mode, "--out", str(records[0]), "--sent-out", str(sent)),
                work,
            )
            started.append(launcher)
            pids = launcher.wait_for("pids", READY_TIMEOUT_S)
            return Deployment(system, [launcher], [], {**pids, "other": [launcher.pid]}, records, sent, modes)
        else:
            raise ValueError(f"unknown system {system!r}")
        dep.modes = modes
        started.extend(c for c in dep.consumers if c not in started)
        for c in dep.consumers:
            c.wait_for("ready", READY_TIMEOUT_S)
        dep.pids["consumer"] = [c.pid for c in dep.consumers]
        return dep
    except BaseException:
        for proc in reversed(started):
            proc.stop(5.0)
        raise
