"""Why an endpoint cannot be listened on, in one line that says what to do.

Every listener (control, camera frames, pull, a worker's --listen, a process worker's derived
streams, the web viewer, metrics) fails at start for the same few reasons; the user sees the
endpoint and the fix, never a traceback.
"""

from __future__ import annotations

import errno as errnos
import os
import socket
import stat

import zmq

_IPC_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class BindError(zmq.ZMQError):
    """A bind that failed; str() is the one line to show (it names the endpoint)."""

    def __init__(self, endpoint: str, errno: int, reason: str) -> None:
        super().__init__(errno, f"cannot listen on {endpoint}: {reason}")
        self.endpoint = endpoint


def bind_error(endpoint: str, exc: BaseException) -> BindError:
    """The BindError for an exception raised by a bind (ZMQError, OSError or a name lookup)."""
    if isinstance(exc, BindError):
        return exc
    if isinstance(exc, socket.gaierror):
        code = errnos.ENODEV  # an unknown host name: ZeroMQ reports it so too
    else:
        code = getattr(exc, "errno", None) or errnos.EINVAL
    return BindError(endpoint, code, explain(endpoint, code, str(exc)))


def explain(endpoint: str, code: int, detail: str = "") -> str:
    """What the error means for this endpoint and what to do about it."""
    ipc = endpoint.startswith("ipc://")
    if code == errnos.EADDRINUSE:
        if ipc:
            return "another program (another node?) is listening there: stop it, or choose another path"
        return "the port is in use (another node or program listens there): stop it, or choose another port"
    if code == errnos.EADDRNOTAVAIL:
        return "this host has no such address: use one of its own addresses, 127.0.0.1, or 0.0.0.0 for all of them"
    if code == errnos.ENODEV:
        return "unknown host or interface name: use an IP address of this host, 127.0.0.1, or 0.0.0.0 for all of them"
    if code in (errnos.EACCES, errnos.EPERM):
        if ipc:
            return "permission denied: choose a path in a directory this user may write to"
        return "permission denied: ports below 1024 need root; choose a port from 1024 up"
    if code == errnos.ENOENT and ipc:
        return "its directory does not exist: create it, or choose another path"
    if code == errnos.ENAMETOOLONG:
        return f"the path is longer than {_IPC_PATH_MAX} bytes, the limit for ipc:// endpoints: choose a shorter one"
    if code == errnos.EINVAL:
        return "not an endpoint this host can listen on: use tcp://HOST:PORT or ipc:///PATH"
    return detail or os.strerror(code)


def refuse_live_ipc(endpoint: str) -> None:
    """libzmq binds an ipc:// path by deleting whatever socket file is there, silently taking
    it from the node that was using it. Refuse when something still answers on that path; a
    stale file (its owner is gone) may be replaced."""
    if not endpoint.startswith("ipc://") or endpoint in ("ipc://*", "ipc://"):
        return
    path = endpoint[len("ipc://") :]
    if path.startswith("@"):  # abstract namespace: the kernel itself refuses a second bind
        return
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # not a socket: libzmq's own error (or success) says the rest
    except OSError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        return  # nobody answers: a stale file
    finally:
        probe.close()
    raise BindError(endpoint, errnos.EADDRINUSE, explain(endpoint, errnos.EADDRINUSE))
