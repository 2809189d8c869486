"""Three hosts on one Linux machine (network namespaces), as in a real install:

    sudo .venv/bin/python deploy/netns-demo.py [--rate 6mbit]

  edge    a capture node with two test cameras, describe on EDGE:5555
  storage a save worker (subscribed) writing to ./netns-demo-output/
  remote  a pull-mode save worker behind a link limited to --rate (tc tbf on the edge's side)

Every link is CURVE-encrypted; the demo makes the keys with `framebus-keys` first and prints
each command, the same steps as across real machines (docs/security.md, "Setup across two machines").
Prints each host's status lines; Ctrl-C stops everything and deletes the namespaces.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.netns import Network  # noqa: E402

CONFIG = """
[node]
name = "netns-edge"
control = "tcp://0.0.0.0:5555"
key = "keys/edge/edge.key_secret"
allow = "keys/edge-allowed"

[[camera]]
id = "cam1"
fps = 15

[[camera]]
id = "cam2"
width = 640
height = 360
"""


def relay(name: str, proc: subprocess.Popen[str]) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        print(f"[{name}] {line}", end="", flush=True)


def make_keys(out: Path) -> None:
    """The key exchange, as you would do it by hand: each host makes its pair, the edge box
    admits the workers' public keys, the workers get the edge's public key."""
    keys = out / "keys"
    steps = [
        ["generate", str(keys / "edge"), "--name", "edge"],  # on the edge box
        ["generate", str(keys / "storage"), "--name", "storage"],  # on each worker host
        ["generate", str(keys / "remote"), "--name", "remote"],
        ["allow", str(keys / "edge-allowed"), str(keys / "storage/storage.key")],  # back on the edge box
        ["allow", str(keys / "edge-allowed"), str(keys / "remote/remote.key")],
    ]
    for step in steps:
        print("$ framebus-keys " + " ".join(step), flush=True)
        subprocess.run([sys.executable, "-m", "common.keys_cli", *step], check=True, cwd=ROOT)


def worker_keys(out: Path, name: str) -> list[str]:
    keys = out / "keys"
    return ["--key", str(keys / name / f"{name}.key_secret"), "--server-key", str(keys / "edge/edge.key")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", default="", help="limit the edge's link, e.g. 6mbit (pull mode keeps frames fresh)")
    parser.add_argument("--out", type=Path, default=Path("netns-demo-output"))
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Network() as net:
        edge, storage, remote = net.add_host("edge"), net.add_host("storage"), net.add_host("remote")
        if args.rate:
            edge.limit_rate(args.rate)
        config = args.out / "edge.toml"
        args.out.mkdir(parents=True, exist_ok=True)
        if not (args.out / "keys").exists():
            make_keys(args.out)
        config.write_text(CONFIG)
        node = f"tcp://{edge.address}:5555"
        py = sys.executable
        procs = {
            "edge": edge.popen(
                [py, "-m", "capture_node", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            ),
            "storage": storage.popen(
                [
                    py,
                    "-m",
                    "worker_node",
                    "save",
                    "--node",
                    node,
                    "--out",
                    str(args.out / "storage"),
                    "--every",
                    "2s",
                    "--status-interval",
                    "5s",
                    *worker_keys(args.out, "storage"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            ),
            "remote": remote.popen(
                [
                    py,
                    "-m",
                    "worker_node",
                    "save",
                    "--node",
                    node,
                    "--pull",
                    "--out",
                    str(args.out / "remote"),
                    "--every",
                    "2s",
                    "--status-interval",
                    "5s",
                    *worker_keys(args.out, "remote"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            ),
        }
        for name, proc in procs.items():
            threading.Thread(target=relay, args=(name, proc), daemon=True).start()
        print(f"edge {edge.address}, storage {storage.address}, remote {remote.address}; Ctrl-C stops", flush=True)
        keys = " ".join(worker_keys(args.out, "remote"))
        print(f"try: sudo ip netns exec {remote.namespace} {py} -m framebus.worker_node describe --node {node} {keys}")
        print(f"and without keys (refused, the edge logs it): ... describe --node {node}", flush=True)
        stop.wait()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(5)


if __name__ == "__main__":
    main()
