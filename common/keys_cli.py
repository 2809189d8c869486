"""`framebus-keys`: make CURVE key pairs and manage a node's allow-list of worker keys."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from framebus.common.keys import (
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    KeyFileError,
    allow_key,
    check_z85_key,
    generate_key_pair,
    load_public_key,
    read_allow_list,
    revoke_key,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="framebus-keys",
        description="CURVE keys for framebus (ZeroMQ certificate files). See docs/security.md.",
        epilog="Typical setup:\n"
        "  edge$    framebus-keys generate /etc/framebus/keys --name edge1\n"
        "  viewer$  framebus-keys generate ~/.framebus --name viewer\n"
        "  edge$    framebus-keys allow /etc/framebus/allowed viewer.key      # copied from the viewer\n"
        "  viewer$  worker-node save --node tcp://edge1:5555 --key ~/.framebus/viewer.key_secret \\\n"
        "               --server-key edge1.key --out frames/                  # copied from the edge box",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    gen = sub.add_parser(
        "generate",
        help="make a key pair: NAME.key (public) and NAME.key_secret (mode 0600)",
        description="Make a CURVE key pair: NAME.key, the public key to give out, and NAME.key_secret, both keys, "
        "readable by you only. Existing files are never overwritten.",
    )
    gen.add_argument("directory", type=Path, help="where to write them (created with mode 0700)")
    gen.add_argument("--name", default=socket.gethostname(), help="file name (default: this host's name)")
    show = sub.add_parser(
        "show",
        help="print the public key of a .key or .key_secret file",
        description="Print the public key (40 characters of Z85) of a .key or .key_secret file.",
    )
    show.add_argument("file", type=Path, help="a .key or .key_secret file")
    allow = sub.add_parser(
        "allow",
        help="admit a worker: copy its public key into an allow-list directory",
        description="Admit a worker: write its public key into the allow-list directory a node reads "
        "(running nodes admit it within 2 s).",
    )
    allow.add_argument("allow_dir", type=Path, help="the allow-list directory (created if missing)")
    allow.add_argument("key", help="the worker's .key file, or its public key as 40 characters of Z85")
    allow.add_argument("--name", help="file name in the allow-list (default: the key file's name)")
    revoke = sub.add_parser(
        "revoke",
        help="remove a worker's key; running nodes drop it within 2 s",
        description="Remove a key from an allow-list: every file that holds it, whatever its name. Running nodes "
        "drop its connections within 2 s.",
    )
    revoke.add_argument("allow_dir", type=Path, help="the allow-list directory")
    revoke.add_argument("name", help="its name in the allow-list (as `list` shows) or the public key itself")
    listing = sub.add_parser(
        "list",
        help="the keys in an allow-list directory",
        description="Print the name and public key of each key in an allow-list directory; files that are not "
        "keys are named on stderr.",
    )
    listing.add_argument("allow_dir", type=Path, help="the allow-list directory")
    return p


def run(args: argparse.Namespace) -> None:
    if args.command == "generate":
        public, secret = generate_key_pair(args.directory, args.name)
        print(f"public key  {load_public_key(public).decode()}")
        print(f"wrote {public} (give this one out) and {secret} (keep it here; mode 0600)")
    elif args.command == "show":
        print(load_public_key(args.file).decode())
    elif args.command == "allow":
        path = Path(args.key)
        if path.exists():
            key = load_public_key(path)
            name = args.name or path.name.removesuffix(SECRET_SUFFIX).removesuffix(PUBLIC_SUFFIX)
        elif args.name:
            key, name = check_z85_key(args.key.encode(), "key"), args.name
        else:
            raise KeyFileError(f"{args.key}: no such file; to allow a key given as text, add --name")
        written = allow_key(args.allow_dir, key, name)
        print(f"allowed {key.decode()} as {written}")
    elif args.command == "revoke":
        removed = revoke_key(args.allow_dir, args.name)
        for path in removed:
            print(f"revoked: removed {path}")
        copies = "file" if len(removed) == 1 else "files (every copy of the key)"
        print(f"revoked {args.name}: {len(removed)} {copies} removed from {args.allow_dir}")
    else:
        keys, problems = read_allow_list(args.allow_dir)
        for name, key in keys.items():
            print(f"{name.removesuffix('.key'):<24} {key.decode()}")
        for problem in problems:
            print(f"ignored: {problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except KeyFileError as exc:
        print(f"framebus-keys: {exc}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError) as exc:  # mkdir, or a path through a file
        print(f"framebus-keys: {exc.filename}: a file is in the way: give a directory", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"framebus-keys: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
