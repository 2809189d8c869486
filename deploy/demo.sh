#!/usr/bin/env bash
# `make demo`: a capture node on the built-in test picture and a save worker that prints a
# live status line per camera. Ctrl-C stops both (within a second).
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-demo-output}
CONTROL=tcp://127.0.0.1:5555

"$BIN/capture-node" --control "$CONTROL" --camera-id demo-cam &
capture=$!
"$BIN/worker-node" save --node "$CONTROL" --out "$OUT" --every 2s --keep-files 50 --status-interval 1s &
worker=$!

stop() { kill -TERM "$capture" "$worker" 2>/dev/null || true; }
trap stop INT TERM
echo "demo: capture node on $CONTROL, saving one frame every 2 s to $OUT/ (Ctrl-C stops)" >&2
wait "$worker" || true
stop
wait "$capture" || true
