#!/usr/bin/env bash
# `make demo`: a capture node on the built-in test picture, a motion-detection process worker
# that republishes the camera as demo-cam/annotated, a web viewer of both, and a save worker
# that prints a live status line per camera. Ctrl-C stops them all (within a second).
#
# Ports: DEMO_CONTROL_PORT (default 5555; the camera takes the next port and that + 1000),
# DEMO_PROCESS_PORT (5575, and the next one) and DEMO_WEB_PORT (8080). A default port that is
# taken (a second demo, say) is replaced by the next free one; a port you set must be free.
# OUT: the directory for saved frames (default demo-output, or demo-output-PORT off the default).
# If any part stops on its own, the demo stops the others and exits non-zero.
set -euo pipefail
BIN=${BIN:-.venv/bin}

ports=$("$BIN/python" - <<'EOF'
import os
import socket
import sys

WANTED = (  # variable, default, ports used as offsets from it
    ("DEMO_CONTROL_PORT", 5555, (0, 1, 1001)),
    ("DEMO_PROCESS_PORT", 5575, (0, 1)),
    ("DEMO_WEB_PORT", 8080, (0,)),
)


def free(port: int) -> bool:
    """Nobody listens there (SO_REUSEADDR, as the nodes bind: TIME_WAIT leftovers do not count)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


taken: set[int] = set()
chosen = []
for var, default, offsets in WANTED:
    given = os.environ.get(var, "")
    if given and not (given.isdigit() and 1024 <= int(given) <= 65535 - max(offsets)):
        print(f"demo: {var}={given}: give a port number from 1024 to {65535 - max(offsets)}", file=sys.stderr)
        sys.exit(2)
    port = int(given or default)
    while True:
        ports = {port + offset for offset in offsets}
        if max(ports) <= 65535 and not ports & taken and all(free(p) for p in ports):
            break
        if given:
            print(f"demo: {var}={given}: port {port} or one after it is in use; choose another, or unset {var}", file=sys.stderr)
            sys.exit(2)
        port += 1
    if port != default:
        print(f"demo: port {default} is in use (another demo?): using {port} instead", file=sys.stderr)
    taken |= ports
    chosen.append(port)
print(*chosen)
EOF
)
read -r control_port process_port web_port <<<"$ports"
CONTROL=tcp://127.0.0.1:$control_port
PROCESS=tcp://127.0.0.1:$process_port
WEB=127.0.0.1:$web_port
if [ "$control_port" = 5555 ]; then OUT=${OUT:-demo-output}; else OUT=${OUT:-demo-output-$control_port}; fi

"$BIN/capture-node" --control "$CONTROL" --camera-id demo-cam &
capture=$!
"$BIN/worker-node" --log-level WARNING process --node "$CONTROL" --camera demo-cam \
    --handler framebus.worker_node.handlers.motion:MotionDetector --control "$PROCESS" &
process=$!
"$BIN/worker-node" --log-level WARNING web --node "$CONTROL" --node "$PROCESS" --listen "$WEB" &
web=$!
"$BIN/worker-node" save --node "$CONTROL" --out "$OUT" --every 2s --keep-files 50 --status-interval 1s &
worker=$!

stopping=0
stop() {
    stopping=1
    kill -TERM "$capture" "$process" "$web" "$worker" 2>/dev/null || true
}
trap stop INT TERM
echo "demo: capture node on $CONTROL, motion worker on $PROCESS (stream demo-cam/annotated)" >&2
echo "demo: web viewer on http://$WEB/ - open it in a browser" >&2
echo "demo: saving one frame every 2 s to $OUT/ (Ctrl-C stops)" >&2
wait -n || true # the first part to end (or Ctrl-C)
status=0
if [ "$stopping" = 0 ]; then
    echo "demo: a part of the demo stopped on its own (its error is above): stopping the others" >&2
    status=1
    stop
fi
wait || true
exit "$status"
