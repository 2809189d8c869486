"""Move every reference to the root packages under `framebus`: `from common.x import y` becomes
`from framebus.common.x import y`, and so on, in code, tests, docs and configs.

    python tools/rename_imports.py            # rewrite the checkout it sits in; prints what changed
    python tools/rename_imports.py --check    # exit 1 if anything is left to rewrite

Why: the wheel installs one top-level package, `framebus`, with `common`, `capture_node` and
`worker_node` inside it (in the checkout they stay at the root, and framebus/ links to them), so
nothing a user installs shadows or is shadowed by another project's `common`. Code must then
name them as `framebus.common`, and so on.

The rewrite is a script, not a hand edit, so that it can be run again after other branches land:
it is deterministic and idempotent (a second run changes nothing). What it rewrites:

1. import statements: `from X[.m] import ...` (also in code held in strings), `import X.m as n`;
   a bare `import X.m` also rewrites the file's `X.` references in code (not in strings);
2. `X.m:attr` specs (entry points, handler and fault specs, in any text);
3. `-m X` command lines in text (docs, shell, units, strings);
4. a module named in a string given to `files(...)`, `import_module(...)`, `include=[...]` or
   `set_forkserver_preload([...])`;
5. `getLogger(__name__)` in the three packages becomes the module's old name as a literal, so
   log lines stay as they are;
6. in pyproject.toml, mypy's `packages = [...]` becomes `["framebus"]`.

What it leaves: logger names and other strings (`"capture_node.camera"`), prose, paths
(`common/latest.py`), and `[sys.executable, "-m", "capture_node"]` in tests (in a checkout or an
editable install the root packages are still importable, and run the same code). Then it runs
ruff's import sorting and formatter on the Python files it changed.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "capture_node", "worker_node")
NEW = "framebus"
SELF = Path(__file__).resolve()
TEXT_SUFFIXES = {".py", ".md", ".sh", ".toml", ".yml", ".yaml", ".service", ".cfg", ".ini", ".txt", ".html"}
TEXT_NAMES = {"Dockerfile", "Makefile", "run"}

_P = "(?:" + "|".join(PACKAGES) + ")"
# at the start of a line, of a string literal, after a "\n" or a ";" (code in strings, for `python -c`)
FROM_IMPORT = re.compile(
    rf"""((?:^\s*(?:[rbfu]{{0,2}}["'])?|\\n|;\s*)\s*from\s+)({_P}(?:\.\w+)*\s+import\b)""", re.MULTILINE
)
IMPORT_AS = re.compile(rf"^(\s*import\s+)({_P}(?:\.\w+)+\s+as\s+\w+\s*(?:#.*)?)$", re.MULTILINE)
IMPORT_BARE = re.compile(rf"^(\s*import\s+)({_P})((?:\.\w+)*)\s*(#.*)?$", re.MULTILINE)
SPEC = re.compile(rf"(?<![\w./-])({_P}(?:\.\w+)+:[A-Za-z_])")
DASH_M = re.compile(rf"(?<=-m )({_P})\b(?![-/])")
NAMED = re.compile(
    rf"""((?:\bfiles|\bimport_module)\(|\b(?:include=|set_forkserver_preload\()\[)(["'])({_P}(?:\.\w+)*)\2"""
)
LOGGER = re.compile(r"getLogger\(__name__\)")
MYPY_PACKAGES = re.compile(rf"^(packages\s*=\s*)\[[^\]\n]*\b{_P}\b[^\]\n]*\]", re.MULTILINE)


def rewrite_text(text: str) -> str:
    """The rules that apply to any text file, code in docs included: 1 (but a bare import), 2, 3."""
    text = FROM_IMPORT.sub(rf"\1{NEW}.\2", text)
    text = IMPORT_AS.sub(rf"\1{NEW}.\2", text)
    text = SPEC.sub(rf"{NEW}.\1", text)
    return DASH_M.sub(rf"{NEW}.\1", text)


def qualify_names(source: str, roots: set[str]) -> str:
    """`common.protocol.X` in code (not in strings or comments) -> `framebus.common.protocol.X`,
    for a file that did `import common.protocol`."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int]] = []
    for i, token in enumerate(tokens):
        if token.type != tokenize.NAME or token.string not in roots:
            continue
        before = tokens[i - 1] if i else None
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        if before is not None and before.string in (".", "import"):
            continue
        if after is not None and after.string == ".":
            edits.append(token.start)
    for row, col in reversed(edits):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + f"{NEW}." + line[col:]
    return "".join(lines)


def rewrite_python(text: str, path: Path) -> str:
    """Bare imports (1), rules 4 and 5, then the text rules."""
    bare = {m.group(2) for m in IMPORT_BARE.finditer(text)}
    if bare:
        text = IMPORT_BARE.sub(
            lambda m: f"{m.group(1)}{NEW}.{m.group(2)}{m.group(3)}" + (f"  {m.group(4)}" if m.group(4) else ""), text
        )
        text = qualify_names(text, bare)
    text = NAMED.sub(rf"\1\2{NEW}.\3\2", text)
    relative = path.relative_to(ROOT)
    if relative.parts[0] in PACKAGES:
        old_name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        text = LOGGER.sub(f'getLogger("{old_name}")', text)
    return rewrite_text(text)


def rewrite(path: Path, text: str) -> str:
    if path.suffix == ".py":
        return rewrite_python(text, path)
    if path.name == "pyproject.toml":
        text = MYPY_PACKAGES.sub(rf'\1["{NEW}"]', text)
    return rewrite_text(text)


def tracked_files() -> list[Path]:
    """Every text file git knows (tracked, or new and not ignored), the links in framebus/ not
    followed: they are the root packages, rewritten once under their own names. (In an sdist,
    framebus/ holds copies: rewriting them too gives the same result.)"""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        paths = [ROOT / name for name in set(filter(None, listed.stdout.decode().split("\0")))]
    else:  # not a checkout (an unpacked sdist): every file but caches and build output
        skip = {"__pycache__", "build", "dist", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
        paths = [p for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    files = []
    for path in sorted(paths):
        if path.is_symlink() or not path.is_file() or path.resolve() == SELF:
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
            files.append(path)
    return files


def tidy(paths: list[Path]) -> None:
    """Import order and line length after the longer names, as CI's ruff wants them."""
    python = [str(p) for p in paths if p.suffix == ".py"]
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not python or not Path(ruff).exists():
        return
    subprocess.run([ruff, "check", "--quiet", "--select", "I", "--fix", *python], cwd=ROOT, check=False)
    subprocess.run([ruff, "format", "--quiet", *python], cwd=ROOT, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    changed = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite(path, text)
        if new != text:
            changed.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in changed:
        print(path.relative_to(ROOT))
    if args.check:
        return 1 if changed else 0
    tidy(changed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
