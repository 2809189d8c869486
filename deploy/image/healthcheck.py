#!/usr/bin/env python3
"""The image's HEALTHCHECK: healthy when the node in this container has a camera streaming.

A capture node is healthy when one of its cameras delivers frames; a worker when it receives
frames from one. Both say so in their Prometheus metrics (framebus_camera_state), which the
node serves on 127.0.0.1:9100 when started with --metrics-port 9100 (framebus-edge does; add it
to a worker's command). FRAMEBUS_HEALTH_URL names another address. Prints one line (docker
inspect shows it) and exits 0 when healthy, 1 when not.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.error
import urllib.request

URL = os.environ.get("FRAMEBUS_HEALTH_URL", "http://127.0.0.1:9100/metrics")
STATE = re.compile(r"^framebus_camera_state\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def camera_states(text: str) -> dict[str, str]:
    """Each camera's current state, from the framebus_camera_state gauges set to 1."""
    states = {}
    for line in text.splitlines():
        match = STATE.match(line)
        if match and float(match["value"]) == 1.0:
            labels = dict(LABEL.findall(match["labels"]))
            states[labels.get("camera", "?")] = labels.get("state", "?")
    return states


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=3) as reply:
            text = reply.read(4 << 20).decode("utf-8", "replace")
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"unhealthy: no metrics at {URL} ({reason}): start the node with --metrics-port 9100")
        return 1
    states = camera_states(text)
    streaming = sorted(camera for camera, state in states.items() if state == "streaming")
    others = ", ".join(f"{camera} {state}" for camera, state in sorted(states.items()) if state != "streaming")
    if streaming:
        print(f"healthy: streaming {', '.join(streaming)}" + (f"; {others}" if others else ""))
        return 0
    print(f"unhealthy: no camera streaming ({others or 'no cameras yet'})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
