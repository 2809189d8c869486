"""Reads a pool's stream like any camera and prints one JSON line per result: which source
frame, which member, how old. Run: python -m tests.support.pool_probe NODE STREAM SECONDS
[KEY SERVER_KEY] (CURVE: this reader's .key_secret file and the node's .key file)."""

from __future__ import annotations

import json
import sys
import time

import zmq

from framebus.worker_node.access import Access
from framebus.worker_node.receiver import FrameReceiver


def main() -> None:
    node, stream, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    keys = sys.argv[4:6]
    access = Access.from_files(keys[0], keys[1:], [node]) if keys else None
    ctx = zmq.Context()
    receiver = FrameReceiver(ctx, [node], [stream], access=access)
    end = None
    print("probe: reading", stream, flush=True)
    while end is None or time.monotonic() < end:
        for _, frame in receiver.poll(0.2):
            h = frame.header
            now = time.time_ns()
            if end is None:
                end = time.monotonic() + seconds
            source = h.meta.get("source", {})
            line = {
                "t": time.monotonic(),
                "seq": source.get("seq"),
                "member": h.meta.get("member"),
                "age_ms": (now - h.capture_ns) / 1e6,
                "results": h.meta.get("results"),
            }
            print(json.dumps(line), flush=True)
    receiver.close()
    ctx.destroy(0)
    print("probe: done", flush=True)


if __name__ == "__main__":
    main()
