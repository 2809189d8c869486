"""Why a camera URL does not open. OpenCV only says "not opened"; a user needs the cause:
unresolvable host, refused connection, wrong credentials, wrong path, no video track."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit

_STATUS = re.compile(r"RTSP/1\.0 (\d{3}) ?(.*)")
_DIGEST_FIELD = re.compile(r'(\w+)="?([^",]*)"?')
MAX_BODY = 65536  # of an SDP: they are a few hundred bytes


def why_not_open(url: str, timeout: float) -> str:
    """A one-line cause, never containing the password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "malformed URL: an unclosed [ in the host"
    try:
        port = parts.port
    except ValueError:
        # Not Python's message: it quotes the bad "port", which is often a piece of the password.
        return (
            "malformed URL: what follows the host is not a port number from 1 to 65535 "
            "(a password holding '/', '?' or '#' must be written %2F, %3F, %23)"
        )
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not host:
        return "the URL has no host"
    default_port = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}.get(scheme)
    port = port or default_port
    if port is None:
        return f"OpenCV/FFmpeg cannot open {scheme}:// URLs here"
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"cannot resolve host {host!r}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            if scheme == "rtsp":
                return _rtsp_describe(conn, url, parts.username, parts.password, timeout)
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port} (nothing listening there)"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:.1f} s"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    if scheme in ("http", "https"):
        return _http_status(url, timeout)
    return "the server answers but the stream could not be opened"


def _rtsp_describe(conn: socket.socket, url: str, user: str | None, password: str | None, timeout: float) -> str:
    """DESCRIBE the stream (with Basic or Digest credentials when asked) and read the SDP."""
    plain_url = _without_userinfo(url)
    status, reason, headers, body = _request(conn, plain_url, None)
    if status == 401 and user is not None:
        challenge = headers.get("www-authenticate", "")
        authorization = _authorization(challenge, unquote(user), unquote(password or ""), plain_url)
        status, reason, headers, body = _request(conn, plain_url, authorization)
    if status == 401:
        return (
            "401 Unauthorized: wrong user or password"
            if user
            else "401 Unauthorized: the camera needs a user and password"
        )
    if status == 404:
        return f"404 Not Found: no stream at path {urlsplit(plain_url).path or '/'!r}"
    if status == 0:
        answer = f"it answered {reason!r}" if reason else "it closed the connection without answering"
        return f"not an RTSP server: {answer}; check the host, the port and the scheme"
    if status != 200:
        return f"the RTSP server answered {status} {reason}".strip()
    media = re.findall(r"^m=(\w+)", body, re.MULTILINE)
    if "video" not in media:
        return f"the stream has no video track (it has: {', '.join(media) or 'nothing'})"
    return "the stream has video but FFmpeg could not open or decode it"


def _request(conn: socket.socket, url: str, authorization: str | None) -> tuple[int, str, dict[str, str], str]:
    lines = [f"DESCRIBE {url} RTSP/1.0", "CSeq: 1", "Accept: application/sdp", "User-Agent: framebus"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MAX_BODY:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    head_lines = head.decode("latin-1").split("\r\n")
    m = _STATUS.match(head_lines[0]) if head_lines else None
    if not m:  # the reason is what it said instead (printable, cut short: it is not ours to trust)
        said = "".join(c if c.isprintable() else "?" for c in head_lines[0][:80]) if data else ""
        return 0, said, {}, ""
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head_lines[1:])}
    declared = headers.get("content-length", "")
    length = min(int(declared), MAX_BODY) if declared.isdigit() else 0  # a camera's answer is not to be trusted
    while len(rest) < length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        rest += chunk
    return int(m[1]), m[2], headers, rest[:length].decode("utf-8", "replace")


def _authorization(challenge: str, user: str, password: str, url: str) -> str:
    if challenge.lower().startswith("digest"):
        fields = dict(_DIGEST_FIELD.findall(challenge))
        realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
        ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()  # noqa: S324 - RTSP Digest is MD5
        ha2 = hashlib.md5(f"DESCRIBE:{url}".encode()).hexdigest()  # noqa: S324
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()  # noqa: S324
        return f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{url}", response="{response}"'
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _http_status(url: str, timeout: float) -> str:
    try:
        with urllib.request.urlopen(_without_userinfo(url), timeout=timeout) as response:  # noqa: S310
            kind = response.headers.get("Content-Type", "?")
            return f"the HTTP server answers 200 with {kind!r}, which FFmpeg could not open as video"
    except urllib.error.HTTPError as exc:
        return f"the HTTP server answered {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return f"HTTP request failed: {exc}"


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()
