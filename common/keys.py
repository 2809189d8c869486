"""CURVE key files: ZeroMQ's certificate format (czmq / pyzmq `zmq.auth`), so keys made here
work with other ZeroMQ tools and the other way round.

A key pair is two files: NAME.key (public, safe to copy) and NAME.key_secret (both keys,
mode 0600). An allow-list is a directory of NAME.key files of the peers a node admits.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq

from framebus.common.files import FileProblemError, read_regular_file

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
_MAX_FILE_BYTES = 64 * 1024  # a certificate is ~300 bytes; anything larger is not one
_Z85_KEY = re.compile(rb"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KeyFileError(ValueError):
    """A key file or allow-list is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # Z85 text, 40 characters
    secret: bytes


def check_z85_key(key: bytes, what: str) -> bytes:
    """A CURVE key in Z85 text is 40 characters of the Z85 alphabet (32 bytes of key)."""
    if not _Z85_KEY.fullmatch(key):
        raise KeyFileError(f"{what}: not a CURVE key (expected 40 characters of Z85 text)")
    return key


def read_key_file(path: Path) -> bytes:
    """A key file's bytes. Only a regular file is read: a FIFO (or a device) named as a key
    would block the node at start, or the allow-list watcher for good. It is opened without
    blocking and checked before any read, and at most _MAX_FILE_BYTES are read."""
    try:
        data = read_regular_file(path, _MAX_FILE_BYTES, "key")
    except FileProblemError as exc:
        hint = " (make one with `framebus-keys generate`)" if exc.missing else ""
        raise KeyFileError(f"{exc}{hint}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise KeyFileError(f"{path}: too large to be a key file")
    return data


def _read_fields(path: Path) -> dict[str, bytes]:
    text = read_key_file(path)
    fields: dict[str, bytes] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(b"=")
        if sep and name.strip() in (b"public-key", b"secret-key"):
            fields[name.strip().decode()] = value.strip(b" \t'\"")
    return fields


def load_public_key(path: Path) -> bytes:
    """The public key from a .key or .key_secret file."""
    fields = _read_fields(path)
    if "public-key" not in fields:
        raise KeyFileError(f"{path}: no public-key line: not a ZeroMQ certificate")
    return check_z85_key(fields["public-key"], f"{path}: public-key")


def load_key_pair(path: Path) -> KeyPair:
    """Both keys from a .key_secret file; the public key must belong to the secret one."""
    fields = _read_fields(path)
    if "secret-key" not in fields:
        hint = f" (this looks like a public key: use {path.name}_secret)" if path.suffix == PUBLIC_SUFFIX else ""
        raise KeyFileError(f"{path}: no secret-key line{hint}")
    secret = check_z85_key(fields["secret-key"], f"{path}: secret-key")
    public = zmq.curve_public(secret)
    if "public-key" in fields and fields["public-key"] != public:
        raise KeyFileError(f"{path}: public-key does not belong to secret-key (the file was edited or mixed up)")
    return KeyPair(public, secret)


def secret_file_is_private(path: Path) -> bool:
    """False if group or others may read the secret key file (worth a warning at start)."""
    try:
        return not path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    except OSError:
        return True  # load_key_pair reports unreadable files


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise KeyFileError(
            f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _certificate(public: bytes, secret: bytes | None) -> bytes:
    kind = "Secret" if secret else "Public"
    lines = [
        f"#   ZeroMQ CURVE {kind} Certificate (made by framebus-keys)",
        "#   Exchange securely, or stay within your own systems." if secret is None else "#   Keep private.",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return ("\n".join(lines) + "\n").encode()


def _write_new(path: Path, content: bytes, mode: int) -> None:
    """Create a file that did not exist, with its final mode from the start (no window in which
    a secret is world-readable), written completely before it gets its name."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits we want (0644 public)
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if the name exists: never overwrites a key
    finally:
        tmp.unlink()


def generate_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret into directory (made 0700 if new); refuses to overwrite."""
    check_name(name)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_path = directory / f"{name}{PUBLIC_SUFFIX}"
    secret_path = directory / f"{name}{SECRET_SUFFIX}"
    for existing in (public_path, secret_path):
        if existing.exists():
            raise KeyFileError(f"{existing}: already exists; not overwriting a key (remove it first)")
    public, secret = zmq.curve_keypair()
    _write_new(secret_path, _certificate(public, secret), 0o600)
    _write_new(public_path, _certificate(public, None), 0o644)
    return public_path, secret_path


def allow_key(allow_dir: Path, public: bytes, name: str) -> Path:
    """Add a peer's public key to an allow-list directory as NAME.key."""
    check_name(name)
    check_z85_key(public, "key")
    allow_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    for known_name, known in read_allow_list(allow_dir)[0].items():
        if known == public:
            raise KeyFileError(f"{allow_dir / known_name}: this key is already allowed")
    path = allow_dir / f"{name}{PUBLIC_SUFFIX}"
    if path.exists():
        raise KeyFileError(f"{path}: already exists (choose another --name, or revoke it first)")
    _write_new(path, _certificate(public, None), 0o644)
    return path


def revoke_key(allow_dir: Path, name_or_key: str) -> list[Path]:
    """Remove a key from an allow-list, by file name (with or without .key) or by the key
    itself. Revoking is by key: every file holding the same key goes, whatever its name (a
    copy left behind would keep admitting it). Returns the files removed."""
    keys, _ = read_allow_list(allow_dir)
    wanted = name_or_key.removesuffix(PUBLIC_SUFFIX) + PUBLIC_SUFFIX
    revoked = {k for n, k in keys.items() if n == wanted or k == name_or_key.encode()}
    matches = [allow_dir / n for n, k in keys.items() if k in revoked]
    named = allow_dir / wanted
    if (
        named not in matches
        and named.exists()
        and not named.is_dir()
        and _NAME.fullmatch(wanted.removesuffix(PUBLIC_SUFFIX))
    ):
        matches.append(named)  # a malformed file is not admitted, but asked for by name it goes too
    if not matches:
        raise KeyFileError(f"{allow_dir}: no allowed key named or equal to {name_or_key!r}")
    for path in matches:
        path.unlink()
    return matches


def read_allow_list(allow_dir: Path) -> tuple[dict[str, bytes], list[str]]:
    """({file name: public key}, [problems]) for every *.key file; a bad file is a problem
    reported by name, never a reason to keep admitting keys that were removed."""
    try:
        names = sorted(p.name for p in allow_dir.iterdir() if p.name.endswith(PUBLIC_SUFFIX))
    except FileNotFoundError:
        raise KeyFileError(f"{allow_dir}: no such allow-list directory") from None
    except NotADirectoryError:
        raise KeyFileError(f"{allow_dir}: the allow-list must be a directory of .key files") from None
    except OSError as exc:
        raise KeyFileError(f"{allow_dir}: cannot read: {exc.strerror or exc}") from None
    keys: dict[str, bytes] = {}
    problems: list[str] = []
    for name in names:
        try:
            keys[name] = load_public_key(allow_dir / name)
        except KeyFileError as exc:
            problems.append(str(exc))
    return keys, problems
