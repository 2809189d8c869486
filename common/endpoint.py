"""Endpoints as users type them and as nodes describe them: one parser for every place.

ZeroMQ reads more into an endpoint than framebus wants: `tcp://SRC;DST` picks a source
address, interface names bind, `127.1` is an IPv4 address to the resolver. Everything a user
types and everything a node describes goes through `parse_endpoint` (ZeroMQ endpoints) or
`parse_listen` (HTTP listeners) first; what they refuse, they refuse with one line that names
what was given and suggests the fix ("did you mean tcp://127.0.0.1:5555?").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from framebus.common.redact import redact

SCHEMES = ("tcp", "ipc", "inproc")
MAX_IPC_PATH = 107  # bytes: sun_path holds 108 with the terminating NUL
MAX_HOST = 253
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):(?P<slashes>/{0,2})")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)  # a name the resolver reads as a number
_SCOPE = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
_CAMERA_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "file", "udp", "rtp", "srt", "mms"}
_OTHER_ZMQ = {"pgm", "epgm", "norm", "tipc", "vmci", "ws", "wss"}
FORMS = "tcp://HOST:PORT or ipc://PATH"


class EndpointError(ValueError):
    """Not an endpoint framebus accepts; the message says what was given and how to fix it."""


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint. tcp: `host` (a name, an IPv4 address, an IPv6 address without
    brackets, or `*`) and `port` (None: `*`, any free port). ipc and inproc: `path`."""

    scheme: str
    host: str = ""
    port: int | None = None
    path: str = ""

    def __str__(self) -> str:
        if self.scheme != "tcp":
            return f"{self.scheme}://{self.path}"
        return f"tcp://{_bracketed(self.host)}:{'*' if self.port is None else self.port}"

    @property
    def is_loopback(self) -> bool:
        """Only this host can reach it: ipc://, inproc://, or tcp:// on a loopback address."""
        return self.scheme != "tcp" or is_loopback_host(self.host)

    @property
    def wildcard_host(self) -> bool:
        """Bound on every interface (0.0.0.0, ::, *): reached by whatever address reached the node."""
        if self.scheme != "tcp":
            return False
        address = ip_literal(self.host)
        return self.host == "*" or (address is not None and address.is_unspecified)

    def with_host(self, host: str) -> Endpoint:
        return Endpoint(self.scheme, host, self.port, self.path)

    def with_port(self, port: int | None) -> Endpoint:
        return Endpoint(self.scheme, self.host, port, self.path)


@dataclass(frozen=True)
class ListenAddress:
    """Where an HTTP server listens (web viewer, metrics): host and port (0: any free port)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{_bracketed(self.host)}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8 and ::1 as address literals, and the name `localhost`: nothing else
    (`127.evil.example` is a name anyone can point anywhere)."""
    if host.lower() == "localhost":
        return True
    address = ip_literal(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host string spells, or None for a name (IPv6 scope ids are ignored)."""
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None


def same_host(a: str, b: str) -> bool:
    """Two host strings name the same host as written: equal addresses, or equal names
    (ignoring case). Names are never resolved here."""
    x, y = ip_literal(a), ip_literal(b)
    if x is not None or y is not None:
        return x == y
    return a.lower() == b.lower()


def parse_host(text: str, what: str = "") -> str:
    """A host alone: a name, an IPv4 address, or an IPv6 address (brackets optional)."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        if isinstance(ip_literal(inner), ipaddress.IPv6Address):
            _check_scope(inner, _shown(text))
            return inner
        _check_host(inner, _shown(text), False, "tcp://")
    except EndpointError as exc:
        raise EndpointError(f"{what}: {exc}" if what else str(exc)) from None
    return inner


def is_loopback(endpoint: str) -> bool:
    """For endpoint text: True only for one that parses and is loopback."""
    try:
        return parse_endpoint(endpoint, bind=True, schemes=SCHEMES).is_loopback
    except EndpointError:
        return False


def parse_endpoint(
    text: str, what: str = "", *, bind: bool = False, schemes: tuple[str, ...] = ("tcp", "ipc")
) -> Endpoint:
    """Parse an endpoint to connect to (`bind=False`: a concrete host and port) or to bind
    (`bind=True`: `*` is allowed as host and port). Raises EndpointError, prefixed by `what`
    (the option or field it came from), and nothing else."""
    try:
        return _parse(text, bind, schemes)
    except EndpointError as exc:
        raise EndpointError(f"{what}: {exc}" if what else str(exc)) from None


def parse_listen(text: str, what: str = "", *, default_host: str = "127.0.0.1") -> ListenAddress:
    """HOST:PORT for an HTTP listener ('127.0.0.1:8080', '0.0.0.0:80', '[::1]:8080'); a bare
    PORT means `default_host`:PORT. Port 0: any free port."""
    try:
        return _parse_listen(text, default_host)
    except EndpointError as exc:
        raise EndpointError(f"{what}: {exc}" if what else str(exc)) from None


# ----------------------------------------------------------------------------- parsing


def _shown(text: str) -> str:
    """The text as the user may see it again: credentials redacted, bounded, control characters escaped."""
    if "@" in text or "=" in text or "%" in text or not text.startswith(("tcp://", "ipc://", "inproc://")):
        text = redact(text)  # a ZeroMQ endpoint without these holds no credential: keep 'tcp://h:http' as typed
    return repr(text if len(text) <= 100 else text[:100] + "…")


def _mean(candidate: str, listen: bool = False) -> str:
    """': did you mean CANDIDATE?' when the candidate is itself accepted, so that a suggestion
    never repeats a mistake, a control character or a password; '' otherwise."""
    return f": did you mean {candidate}?" if _accepted(candidate, listen) else ""


def _example(candidate: str, fallback: str, listen: bool = False) -> str:
    return candidate if _accepted(candidate, listen) else fallback


def _accepted(candidate: str, listen: bool) -> bool:
    try:
        if listen:
            _parse_listen(candidate, "127.0.0.1")
        else:
            _parse(candidate, True, ("tcp", "ipc"))
    except EndpointError:
        return False
    return True


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _parse(text: str, bind: bool, schemes: tuple[str, ...]) -> Endpoint:
    if not isinstance(text, str):
        raise EndpointError(f"{text!r} is not an endpoint ({FORMS})")
    shown = _shown(text)
    if not text:
        raise EndpointError(f"an empty endpoint: give {FORMS}")
    if text != text.strip():
        raise EndpointError(f"{shown} has spaces around it{_mean(text.strip())}")
    m = _SCHEME.match(text)
    if m is None or (m["slashes"] != "//" and not _looks_like_scheme(m["scheme"])):
        raise EndpointError(_no_scheme(text, shown))
    scheme, rest = m["scheme"], text[m.end() :]
    if m["slashes"] != "//":
        after = text[len(scheme) + 1 :]
        after = after if scheme.lower() == "ipc" else after.lstrip("/")
        raise EndpointError(f"{shown} needs '//' after '{scheme}:'{_mean(f'{scheme.lower()}://{after}')}")
    lowered = scheme.lower()
    if lowered in _CAMERA_SCHEMES:
        raise EndpointError(
            f"{shown} is a camera URL: that goes to capture-node --source (or a [[camera]] source). "
            f"framebus endpoints are {FORMS}; a worker's --node is a capture node's describe endpoint, "
            "e.g. tcp://edge1:5555"
        )
    if lowered in _OTHER_ZMQ:
        raise EndpointError(f"{shown}: ZeroMQ's {lowered}:// transport is not used by framebus: give {FORMS}")
    if lowered not in SCHEMES:
        raise EndpointError(f"{shown} has an unknown scheme {scheme!r}: give {FORMS}")
    if scheme != lowered:
        raise EndpointError(f"{shown}: schemes are lower case{_mean(f'{lowered}://{rest}')}")
    if scheme not in schemes:
        where = "inside one process" if scheme == "inproc" else "on this host"
        raise EndpointError(f"{shown}: {scheme}:// (a socket {where}) is not accepted here: give {FORMS}")
    if scheme == "tcp":
        host, port = _host_port(rest, shown, bind, "tcp://")
        return Endpoint("tcp", host, port)
    return Endpoint(scheme, path=_path(scheme, rest, shown, bind))


def _looks_like_scheme(scheme: str) -> bool:
    return scheme.lower() in SCHEMES or scheme.lower() in _CAMERA_SCHEMES


def _no_scheme(text: str, shown: str) -> str:
    if text.isascii() and text.isdigit():
        return f"{shown} has no host and no scheme{_mean(f'tcp://127.0.0.1:{text}')}"
    if text.startswith("/"):
        return f"{shown} has no scheme{_mean(f'ipc://{text}')}"
    try:
        host, port = _host_port(text, shown, False, "")
    except EndpointError:
        return f"{shown} is not an endpoint: give {FORMS}"
    return f"{shown} has no scheme{_mean(f'tcp://{_bracketed(host)}:{port}')}"


def _host_port(rest: str, shown: str, bind: bool, prefix: str) -> tuple[str, int | None]:
    """HOST:PORT after the scheme; port None for `*`."""
    if "@" in rest:
        raise EndpointError(
            f"{shown} carries a user name or password: framebus endpoints have none (CURVE keys authenticate, "
            "see docs/security.md): give tcp://HOST:PORT"
        )
    if ";" in rest:
        source, _, destination = rest.partition(";")
        suggestion = _mean(prefix + destination, listen=not prefix)
        raise EndpointError(
            f"{shown} names a source address ({source!r}, ZeroMQ's SRC;DST form): framebus does not "
            f"accept it, give only {prefix}HOST:PORT{suggestion}"
        )
    if rest.startswith("["):
        inside, closed, after = rest[1:].partition("]")
        if not closed:
            raise EndpointError(f"{shown}: an IPv6 address opened with '[' must be closed with ']'")
        if not after.startswith(":"):
            example = _example(f"{prefix}[{inside}]:5555", f"{prefix}[::1]:5555", listen=not prefix)
            raise EndpointError(f"{shown} has no port: give one after the address, e.g. {example}")
        host, port_text = inside, after[1:]
        if ip_literal(host) is None or not isinstance(ip_literal(host), ipaddress.IPv6Address):
            raise EndpointError(f"{shown}: {host!r} in brackets is not an IPv6 address")
        _check_scope(host, shown)
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            example = _example(f"{prefix}{rest}:5555", f"{prefix}127.0.0.1:5555", listen=not prefix)
            raise EndpointError(f"{shown} has no port: give one, e.g. {example}")
        if ":" in host:
            if ip_literal(host) is not None and port_text.isascii() and port_text.isdigit():
                suggestion = _mean(f"{prefix}[{host}]:{port_text}", listen=not prefix)
                raise EndpointError(f"{shown}: put an IPv6 address in brackets{suggestion}")
            raise EndpointError(
                f"{shown} has more than one ':' (an IPv6 address goes in brackets, e.g. {prefix}[::1]:5555)"
            )
        _check_host(host, shown, bind, prefix)
    return host, _port(port_text, shown, bind, prefix, host)


def _check_host(host: str, shown: str, bind: bool, prefix: str) -> None:
    if not host:
        raise EndpointError(
            f"{shown} has no host: e.g. {prefix}127.0.0.1:5555 (this host only), {prefix}0.0.0.0:5555 "
            "(every interface, to bind)"
        )
    if host == "*":
        if not bind:
            raise EndpointError(f"{shown}: '*' (every interface) is for binding; to connect, name the host")
        return
    if len(host) > MAX_HOST:
        raise EndpointError(f"{shown}: the host name is longer than {MAX_HOST} characters")
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        bad = sorted({c for c in host if not (c.isascii() and (c.isalnum() or c in "._-"))})
        what = f"the character(s) {''.join(bad)!r}" if bad else "an empty or malformed part"
        raise EndpointError(f"{shown}: the host {host!r} has {what}: give a host name or an IP address")
    if _NUMERIC_LABEL.fullmatch(labels[-1]) and not isinstance(ip_literal(host), ipaddress.IPv4Address):
        raise EndpointError(f"{shown}: {host!r} is not an IPv4 address (four numbers 0-255, e.g. 127.0.0.1)")


def _check_scope(host: str, shown: str) -> None:
    _, percent, scope = host.partition("%")
    if percent and not _SCOPE.fullmatch(scope):
        raise EndpointError(f"{shown}: {scope!r} is not an interface name (the IPv6 scope after '%')")


def _port(text: str, shown: str, bind: bool, prefix: str, host: str) -> int | None:
    if text == "*":
        if not bind:
            raise EndpointError(f"{shown}: port '*' (any free port) is for binding; to connect, give the port")
        return None
    digits = text.rstrip("/")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 5:
        raise EndpointError(f"{shown}: the port {text!r} is not a number from 1 to 65535")
    if digits != text:
        raise EndpointError(f"{shown} has a path after the port{_mean(f'{prefix}{_bracketed(host)}:{int(digits)}')}")
    port = int(digits)
    if not 1 <= port <= 65535:
        hint = " (use '*' for any free port)" if bind and port == 0 else ""
        raise EndpointError(f"{shown}: the port {port} is not from 1 to 65535{hint}")
    return port


def _path(scheme: str, path: str, shown: str, bind: bool) -> str:
    if not path:
        example = "ipc:///tmp/framebus-node" if scheme == "ipc" else "inproc://name"
        raise EndpointError(f"{shown} has no path: e.g. {example}")
    if not path.isprintable():
        raise EndpointError(f"{shown}: the path contains control characters")
    if path == "*" and not bind:
        raise EndpointError(f"{shown}: '*' (any free name) is for binding; to connect, give the path")
    if scheme == "ipc" and len(path.encode("utf-8", "surrogatepass")) > MAX_IPC_PATH:
        raise EndpointError(f"{shown}: an ipc:// path is at most {MAX_IPC_PATH} bytes (a Unix socket's limit)")
    return path


def _parse_listen(text: str, default_host: str) -> ListenAddress:
    if not isinstance(text, str):
        raise EndpointError(f"{text!r} is not HOST:PORT")
    shown = _shown(text)
    example = "e.g. 127.0.0.1:8080 (this host only) or 0.0.0.0:8080 (every interface)"
    if text.isascii() and text.isdigit():
        return ListenAddress(default_host, _listen_port(text, shown))
    if m := _SCHEME.match(text):
        if m["slashes"] == "//":
            rest = text[m.end() :].rstrip("/")
            raise EndpointError(f"{shown}: give HOST:PORT without a scheme{_mean(rest, listen=True)}")
    if text != text.strip():
        raise EndpointError(f"{shown} has spaces around it{_mean(text.strip(), listen=True)}")
    if ";" in text:
        raise EndpointError(f"{shown} is not HOST:PORT ({example})")
    if text.startswith("["):
        inside, closed, after = text[1:].partition("]")
        if not closed or not after.startswith(":") or not isinstance(ip_literal(inside), ipaddress.IPv6Address):
            raise EndpointError(f"{shown} is not HOST:PORT ({example}; an IPv6 address goes in brackets: [::1]:8080)")
        _check_scope(inside, shown)
        return ListenAddress(inside, _listen_port(after[1:], shown))
    host, colon, port = text.rpartition(":")
    if not colon:
        raise EndpointError(f"{shown} has no port: {example}")
    if ":" in host:
        raise EndpointError(f"{shown}: put an IPv6 address in brackets, e.g. [::1]:8080")
    if host in ("", "*"):
        raise EndpointError(f"{shown} has no host: {example}")
    _check_host(host, shown, False, "")
    return ListenAddress(host, _listen_port(port, shown))


def _listen_port(text: str, shown: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise EndpointError(f"{shown}: the port {text!r} is not a number from 0 to 65535")
    return int(text)
