"""Prometheus metrics endpoint shared by both node types (prometheus_client)."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from framebus.common.endpoint import EndpointError, ListenAddress, parse_listen
from framebus.common.security import http_exposure_warning
from framebus.common.words import State

log = logging.getLogger("framebus.metrics")

STATES = tuple(state.value for state in State)  # a camera_state series each (a worker adds its own)
METRICS_HELP = "serve Prometheus metrics: PORT (on 127.0.0.1) or HOST:PORT (0.0.0.0:PORT for other hosts); default: off"


def parse_metrics_address(text: str) -> ListenAddress | None:
    """--metrics-port: PORT means 127.0.0.1:PORT (metrics have no login), HOST:PORT, 0: off."""
    if text == "0":
        return None
    address = parse_listen(text)
    if address.port == 0:
        raise EndpointError(f"{text!r}: metrics need a fixed port for the scraper, e.g. 127.0.0.1:9100")
    return address


def serve_metrics(address: ListenAddress | None) -> None:
    """Serve /metrics at address (None: not at all). Metrics carry camera ids, never URLs.
    Raises OSError when the address cannot be listened on."""
    if address is None:
        return
    start_http_server(address.port, addr=address.host)
    log.info("metrics on http://%s/metrics", address)
    warning = http_exposure_warning("the metrics endpoint", address, "reads camera ids, states and counters")
    if warning:
        log.warning("%s", warning)
