"""Key files, allow-lists and the settings that use them: safe modes, clear errors naming the
file and field, and interoperability with pyzmq's own certificate reader."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq.auth

from framebus.capture_node import config
from framebus.capture_node.config import ConfigError
from framebus.capture_node.exposure import curve_files
from framebus.common import keys_cli
from framebus.common.keys import (
    KeyFileError,
    allow_key,
    generate_key_pair,
    load_key_pair,
    load_public_key,
    read_allow_list,
    revoke_key,
)
from framebus.worker_node.access import ANY_NODE, Access


def test_generated_pair_has_safe_modes_and_reads_back_with_pyzmq(tmp_path: Path) -> None:
    old = os.umask(0o077)  # a strict umask must not make the public key unreadable either
    try:
        public, secret = generate_key_pair(tmp_path / "keys", "edge1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    pair = load_key_pair(secret)
    assert zmq.auth.load_certificate(secret) == (pair.public, pair.secret)
    assert zmq.auth.load_certificate(public) == (pair.public, None)
    assert load_public_key(public) == pair.public == zmq.curve_public(pair.secret)
    assert not list((tmp_path / "keys").glob(".*")), "no temporary files left behind"


def test_generate_never_overwrites_a_key(tmp_path: Path) -> None:
    _, secret = generate_key_pair(tmp_path, "edge1")
    before = secret.read_bytes()
    with pytest.raises(KeyFileError, match=r"edge1\.key.*already exists"):
        generate_key_pair(tmp_path, "edge1")
    assert secret.read_bytes() == before


def test_pyzmq_certificates_are_accepted(tmp_path: Path) -> None:
    public, secret = zmq.auth.create_certificates(tmp_path, "made-by-pyzmq")
    assert load_key_pair(Path(secret)).public == load_public_key(Path(public))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such key file"),
        (b"", "no secret-key line"),
        (b'curve\n    secret-key = "short"\n', "not a CURVE key"),
        (b'curve\n    secret-key = "' + b"~" * 40 + b'"\n', "not a CURVE key"),
        (b"x" * 70000, "too large"),
    ],
)
def test_bad_secret_key_files_are_named_with_the_problem(tmp_path: Path, content: bytes | None, problem: str) -> None:
    path = tmp_path / "node.key_secret"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KeyFileError, match=problem) as caught:
        load_key_pair(path)
    assert str(path) in str(caught.value)


def test_public_key_given_where_the_secret_belongs_says_so(tmp_path: Path) -> None:
    public, _ = generate_key_pair(tmp_path, "edge1")
    with pytest.raises(KeyFileError, match=r"looks like a public key: use edge1\.key_secret"):
        load_key_pair(public)


def test_mismatched_public_and_secret_key_are_refused(tmp_path: Path) -> None:
    _, secret = generate_key_pair(tmp_path, "a")
    other_public, _ = zmq.curve_keypair()
    text = secret.read_text()
    mixed = text.replace(load_public_key(secret).decode(), other_public.decode())
    (tmp_path / "mixed.key_secret").write_text(mixed)
    with pytest.raises(KeyFileError, match="does not belong to secret-key"):
        load_key_pair(tmp_path / "mixed.key_secret")


def test_allow_list_skips_a_bad_file_by_name_and_keeps_the_good_ones(tmp_path: Path) -> None:
    allow = tmp_path / "allowed"
    public, _ = generate_key_pair(tmp_path, "viewer")
    allow_key(allow, load_public_key(public), "viewer")
    (allow / "broken.key").write_text("not a certificate")
    (allow / "notes.txt").write_text("ignored: not a .key file")
    found, problems = read_allow_list(allow)
    assert found == {"viewer.key": load_public_key(public)}
    assert len(problems) == 1 and "broken.key" in problems[0]


def test_allow_and_revoke_by_name_or_key(tmp_path: Path) -> None:
    allow = tmp_path / "allowed"
    a, _ = zmq.curve_keypair()
    b, _ = zmq.curve_keypair()
    allow_key(allow, a, "alpha")
    allow_key(allow, b, "beta")
    with pytest.raises(KeyFileError, match="already allowed"):
        allow_key(allow, a, "alpha-again")
    with pytest.raises(KeyFileError, match="key name"):
        allow_key(allow, a, "../escape")
    assert revoke_key(allow, "alpha") == [allow / "alpha.key"]
    assert revoke_key(allow, b.decode()) == [allow / "beta.key"]
    assert read_allow_list(allow) == ({}, [])
    with pytest.raises(KeyFileError, match="no allowed key"):
        revoke_key(allow, "alpha")


def test_keys_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys_cli.main(["generate", str(tmp_path / "w"), "--name", "viewer"]) == 0
    key = load_public_key(tmp_path / "w/viewer.key").decode()
    assert key in capsys.readouterr().out
    assert keys_cli.main(["show", str(tmp_path / "w/viewer.key_secret")]) == 0
    assert capsys.readouterr().out.strip() == key
    assert keys_cli.main(["allow", str(tmp_path / "allowed"), str(tmp_path / "w/viewer.key")]) == 0
    assert keys_cli.main(["allow", str(tmp_path / "allowed"), zmq.curve_keypair()[0].decode(), "--name", "ops"]) == 0
    capsys.readouterr()
    assert keys_cli.main(["list", str(tmp_path / "allowed")]) == 0
    listing = capsys.readouterr().out
    assert "viewer" in listing and key in listing and "ops" in listing
    assert keys_cli.main(["revoke", str(tmp_path / "allowed"), "viewer"]) == 0
    assert keys_cli.main(["show", str(tmp_path / "missing.key")]) == 2
    assert "missing.key: no such key file" in capsys.readouterr().err


def node_toml(tmp_path: Path, node: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\n{node}\n[[camera]]\nid = "cam1"\n')
    return path


def test_config_key_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    generate_key_pair(tmp_path / "keys", "node")
    (tmp_path / "allowed").mkdir()
    path = node_toml(tmp_path, 'control = "tcp://0.0.0.0:5555"\nkey = "keys/node.key_secret"\nallow = "allowed"')
    curve = curve_files(config.load(path))
    assert curve is not None and curve.key == tmp_path / "keys/node.key_secret"


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ('key = "keys/node.key_secret"', "node.allow: CURVE needs both"),
        ('allow = "allowed"', "node.key: CURVE needs both"),
        ('key = "keys/missing.key_secret"\nallow = "allowed"', "node.key: .*missing.key_secret: no such key file"),
        ('key = "keys/node.key"\nallow = "allowed"', "node.key: .*no secret-key line"),
        ('key = "keys/node.key_secret"\nallow = "nope"', "node.allow: .*nope: no such allow-list directory"),
        ('key = "keys/node.key_secret"\nallow = "keys/node.key"', "node.allow: .*must be a directory"),
        ('control = "tcp://0.0.0.0:5555"', "node.control: tcp://0.0.0.0:5555 can be reached from other hosts"),
        ("insecure = 1", "node.insecure: must be bool"),
    ],
)
def test_config_security_errors_name_file_and_field(tmp_path: Path, node: str, message: str) -> None:
    generate_key_pair(tmp_path / "keys", "node")
    (tmp_path / "allowed").mkdir()
    path = node_toml(tmp_path, node)
    with pytest.raises(ConfigError, match=message) as caught:
        config.load(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_without_keys_every_exposed_endpoint_needs_insecure(tmp_path: Path) -> None:
    for field, value in (("bind", "tcp://0.0.0.0:7000"), ("pull_bind", "tcp://10.1.2.3:7001")):
        data = {"camera": [{"id": "cam1", field: value}]}
        with pytest.raises(ConfigError, match=rf"camera\[0\]\.{field}: .* can be reached from other hosts"):
            config.from_dict(data, "x.toml")
        assert config.from_dict({**data, "node": {"insecure": True}}, "x.toml").node.insecure
    with pytest.raises(ConfigError, match=r"camera\[0\]\.connect: tcp://10\.0\.0\.9:6000"):
        config.from_dict({"camera": [{"id": "cam1", "connect": ["tcp://10.0.0.9:6000"]}]}, "x.toml")
    local = {"camera": [{"id": "a", "bind": "tcp://127.0.0.2:7000"}, {"id": "b", "bind": "ipc:///tmp/fb-b"}]}
    assert not config.from_dict(local, "x.toml").node.insecure


def test_worker_access_pairs_server_keys_with_nodes(tmp_path: Path) -> None:
    _, mine = generate_key_pair(tmp_path, "worker")
    a, _ = generate_key_pair(tmp_path, "edge-a")
    b, _ = generate_key_pair(tmp_path, "edge-b")
    one = Access.from_files(mine, [a], ["tcp://x:5555", "tcp://y:5555"])
    assert one.client("tcp://y:5555") == one.client(ANY_NODE)
    paired = Access.from_files(mine, [a, b], ["tcp://x:5555", "tcp://y:5555"])
    client = paired.client("tcp://y:5555")
    assert client is not None and client.server_key == load_public_key(b)
    with pytest.raises(KeyFileError, match="2 --server-key files for 3 --node"):
        Access.from_files(mine, [a, b], ["n1", "n2", "n3"])
    with pytest.raises(KeyFileError, match="needs both --key"):
        Access.from_files(mine, [], ["n1"])
    with pytest.raises(KeyFileError, match="edge-a.key: no secret-key line"):
        Access.from_files(a, [b], ["n1"])
    assert Access.from_files(None, [], ["n1"]).client("n1") is None


def test_start_warnings_for_plaintext_on_the_network_and_a_readable_secret(tmp_path: Path) -> None:
    exposed = config.from_dict(
        {"node": {"control": "tcp://0.0.0.0:5555", "insecure": True}, "camera": [{"id": "a"}]}, "x"
    )
    assert any(w.startswith("INSECURE") for w in config.security_warnings(exposed))
    local = config.from_dict({"node": {"insecure": True}, "camera": [{"id": "a"}]}, "x")
    assert config.security_warnings(local) == []  # loopback only: nothing goes out
    _, secret = generate_key_pair(tmp_path / "keys", "node")
    (tmp_path / "allowed").mkdir()
    keyed = {"key": str(secret), "allow": str(tmp_path / "allowed"), "control": "tcp://0.0.0.0:5555"}
    assert config.security_warnings(config.from_dict({"node": keyed, "camera": [{"id": "a"}]}, "x")) == []
    secret.chmod(0o644)
    (warning,) = config.security_warnings(config.from_dict({"node": keyed, "camera": [{"id": "a"}]}, "x"))
    assert "group or others can read this secret key" in warning


# ----------------------------------------------------------------------------- FIFOs, devices, copies


def _load_in_thread(load: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Run a load that must not block; its outcome (an exception) lands in the list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            load()
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5.0)
    return thread, errors


def _release(fifo: Path) -> None:
    """A reader blocked in open() on the FIFO (the bug) is let go, so no thread stays stuck."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # no reader: nothing to release


@pytest.mark.parametrize(
    "load",
    [load_key_pair, load_public_key, lambda p: Access.from_files(p, [p], ["n1"])],
    ids=["secret key", "public key", "worker --key"],
)
def test_a_fifo_as_key_file_is_refused_at_once(tmp_path: Path, load: Callable[[Path], object]) -> None:
    fifo = tmp_path / "node.key_secret"
    os.mkfifo(fifo)
    try:
        thread, errors = _load_in_thread(lambda: load(fifo))
        assert not thread.is_alive(), "reading the key file blocked on a FIFO"
        assert [str(e) for e in errors] == [
            f"{fifo}: not a regular file (a FIFO, socket or device cannot be a key file)"
        ]
    finally:
        _release(fifo)


def test_a_device_as_key_file_is_refused_before_reading() -> None:
    with pytest.raises(KeyFileError, match="/dev/zero: not a regular file"):
        load_public_key(Path("/dev/zero"))


def test_a_fifo_in_the_allow_list_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    allow = tmp_path / "allowed"
    a, _ = zmq.curve_keypair()
    allow_key(allow, a, "alpha")
    os.mkfifo(allow / "evil.key")
    try:
        result: list[object] = []
        thread, errors = _load_in_thread(lambda: result.append(read_allow_list(allow)))
        assert not thread.is_alive() and not errors, "reading the allow-list blocked on a FIFO"
        assert result == [
            (
                {"alpha.key": a},
                [f"{allow / 'evil.key'}: not a regular file (a FIFO, socket or device cannot be a key file)"],
            )
        ]
    finally:
        _release(allow / "evil.key")


def test_revoking_by_name_removes_every_copy_of_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A copy under another name would go on admitting the revoked key."""
    allow = tmp_path / "allowed"
    a, _ = zmq.curve_keypair()
    b, _ = zmq.curve_keypair()
    allow_key(allow, a, "alpha")
    allow_key(allow, b, "beta")
    shutil.copy(allow / "alpha.key", allow / "alpha-laptop.key")  # the same key, copied by hand
    shutil.copy(allow / "alpha.key", allow / "zz-old.key")
    assert keys_cli.main(["revoke", str(allow), "alpha"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out[:3]) == [f"revoked: removed {allow / n}" for n in ("alpha-laptop.key", "alpha.key", "zz-old.key")]
    assert out[3:] == [f"revoked alpha: 3 files (every copy of the key) removed from {allow}"]
    assert read_allow_list(allow) == ({"beta.key": b}, [])


def test_revoking_by_key_removes_every_copy_and_a_malformed_file_goes_by_name(tmp_path: Path) -> None:
    allow = tmp_path / "allowed"
    a, _ = zmq.curve_keypair()
    allow_key(allow, a, "alpha")
    shutil.copy(allow / "alpha.key", allow / "again.key")
    assert sorted(revoke_key(allow, a.decode())) == [allow / "again.key", allow / "alpha.key"]
    (allow / "broken.key").write_text("not a certificate")
    assert revoke_key(allow, "broken") == [allow / "broken.key"]
    assert not list(allow.iterdir())


def test_a_worker_warns_about_a_secret_key_others_can_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, secret = generate_key_pair(tmp_path, "viewer")
    server, _ = generate_key_pair(tmp_path, "node")
    with caplog.at_level(logging.WARNING, logger="worker_node.access"):
        Access.from_files(secret, [server], ["n1"])
    assert caplog.messages == []
    secret.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="worker_node.access"):
        Access.from_files(secret, [server], ["n1"])
    assert caplog.messages == [f"--key {secret}: group or others can read this secret key (chmod 600 it)"]
