#!/usr/bin/env bash
# `make demo`: a capture node on the built-in test picture, a motion-detection process worker
# that republishes the camera as demo-cam/annotated, a web viewer of both, and a save worker
# that prints a live status line per camera. Ctrl-C stops them all (within a second).
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-demo-output}
CONTROL=tcp://127.0.0.1:5555
PROCESS=tcp://127.0.0.1:5575
WEB=${WEB:-127.0.0.1:8080}

"$BIN/capture-node" --control "$CONTROL" --camera-id demo-cam &
capture=$!
"$BIN/worker-node" --log-level WARNING process --node "$CONTROL" --camera demo-cam \
    --handler worker_node.handlers.motion:MotionDetector --control "$PROCESS" &
process=$!
"$BIN/worker-node" --log-level WARNING web --node "$CONTROL" --node "$PROCESS" --listen "$WEB" &
web=$!
"$BIN/worker-node" save --node "$CONTROL" --out "$OUT" --every 2s --keep-files 50 --status-interval 1s &
worker=$!

stop() { kill -TERM "$capture" "$process" "$web" "$worker" 2>/dev/null || true; }
trap stop INT TERM
echo "demo: capture node on $CONTROL, motion worker on $PROCESS (stream demo-cam/annotated)" >&2
echo "demo: web viewer on http://$WEB/ - open it in a browser" >&2
echo "demo: saving one frame every 2 s to $OUT/ (Ctrl-C stops)" >&2
wait "$worker" || true
stop
wait "$capture" "$process" "$web" || true
