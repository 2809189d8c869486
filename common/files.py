"""Reading a small file a user names (a config, a key, an allow-list) without being stalled by
it: a FIFO or a device named there would block the node at start, or a reload or a watcher for
good, and a huge file would be read whole. Opened without blocking, checked to be a regular
file before any read, read up to a bound."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileProblemError(ValueError):
    """One line, starting with the path, that says what is wrong with the file."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing  # the file does not exist: the caller may say how to make one


def read_regular_file(path: Path, limit: int, kind: str) -> bytes:
    """At most limit + 1 bytes of the file: more than `limit` means too large, which the caller
    says in its own words. `kind` names the file in messages ("config", "key")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileProblemError(f"{path}: no such {kind} file", missing=True) from None
    except IsADirectoryError:
        raise FileProblemError(f"{path}: is a directory, not a {kind} file") from None
    except OSError as exc:
        raise FileProblemError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise FileProblemError(f"{path}: is a directory, not a {kind} file")
        if not stat.S_ISREG(mode):
            raise FileProblemError(f"{path}: not a regular file (a FIFO, socket or device cannot be a {kind} file)")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise FileProblemError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)
