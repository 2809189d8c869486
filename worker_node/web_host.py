"""Which Host names the web viewer answers: the defence against DNS rebinding.

A page on any website can make its own name resolve to 127.0.0.1 (or to the viewer's LAN
address) a moment after it loaded; the browser then treats the viewer as that website's own
origin, so the page may read the `.jpg` and `.mjpg` URLs and open the wall's WebSocket (whose
Origin check passes: Origin and Host both carry the attacker's name). What the browser cannot
hide is the name: it sends it in `Host`. So the viewer answers only requests addressed to an
IP literal, to `localhost`, to this host's own names, to the name it listens on, or to a name
given with `--allow-host` (a reverse proxy's public name, a DNS alias), and refuses the rest
with 421 and one log line naming the host and the flag (docs/security.md).

A request without a Host header is answered: browsers always send one, so a rebinding page
cannot leave it out.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from framebus.common.ratelimit import RateLimitedLog

log = logging.getLogger("worker_node.web")
_refused = RateLimitedLog(log, interval=60.0)


def own_names() -> set[str]:
    """This host's names as people type them: its hostname, its FQDN, and mDNS's NAME.local."""
    short = socket.gethostname()
    return {short, socket.getfqdn(short), short.split(".")[0] + ".local"}


def host_name(header: str) -> str | None:
    """The name (or IP literal) in a Host header, lower case, without port or trailing dot;
    None if the header is not of Host's form."""
    header = header.strip().lower()
    if header.startswith("["):  # [v6]:port
        name, close, rest = header[1:].partition("]")
        if not close or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
    else:
        name, colon, port = header.rpartition(":")
        if not colon:
            name = port
        elif not port.isdigit() or ":" in name:
            return None
    name = name.rstrip(".")
    return name if name and all(c.isalnum() or c in "-._:" for c in name) else None


def allowed_name(text: str) -> str:
    """An --allow-host value: a name as a browser sends it in Host (no scheme, no path; a port is ignored)."""
    name = host_name(text)
    if name is None:
        raise ValueError(f"{text[:100]!r} is not a host name: give the name alone, as in --allow-host cams.example.org")
    return name


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class AllowedHosts:
    """The names this viewer answers to (see the module's docstring)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = {n.lower().rstrip(".") for n in names if n} | {"localhost"}

    def allows(self, header: str | None) -> bool:
        if header is None:
            return True  # not a browser
        name = host_name(header)
        return name is not None and (is_ip(name) or name in self.names or name.endswith(".localhost"))

    def middleware(self) -> Middleware:
        @web.middleware
        async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
            header = request.headers.get("Host")
            if self.allows(header):
                return await handler(request)
            shown = (header or "")[:100]
            name = host_name(shown) or "NAME"
            _refused.warning(
                "host",
                "web request from %s refused: Host %r is not a name of this viewer (a DNS-rebinding page "
                "sends its own name); if you open the viewer by that name, add --allow-host %s",
                request.remote,
                shown,
                name,
            )
            raise web.HTTPMisdirectedRequest(
                text=f"this viewer does not answer to the name {shown!r}: open it by its IP address or "
                "a name given with --allow-host\n"
            )

        return check_host
