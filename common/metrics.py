"""Prometheus metrics endpoint shared by both node types (prometheus_client)."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger("framebus.metrics")

STATES = ("streaming", "connecting", "reconnecting", "source-error", "ended", "stopped", "stale")


def serve_metrics(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on port (0: not at all). Metrics carry camera ids, never URLs."""
    if port:
        start_http_server(port, addr=address)
        log.info("metrics on http://%s:%d/metrics", address, port)
