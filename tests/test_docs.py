"""The README and docs/ hold together: every relative link leads to a file that exists and every
`#anchor` to a heading that exists (as GitHub names headings), each page opens with a table of
contents, the README states the test command CI runs, and the data-path picture is the one
tools/diagram.py draws. A page moved or a heading renamed fails here, not in a reader's browser."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.support.processes import ROOT

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# Pages other helpers are writing now (issue 14: worker pools; issue 13: the browser
# wall). The README links them already; until they land, a link to them is not an error. Once
# a page exists it is checked like any other: remove it from here when it has landed.
PENDING: set[Path] = set()  # pages linked before they are written (none now)
# Pages that need no table of contents: the README is the overview, and the wire protocol's
# numbered sections are its own index (its text is owned by issue 12 step 10).
NO_TOC = {ROOT / "README.md", ROOT / "docs" / "protocol.md"}

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def prose(page: Path) -> str:
    """The page without code blocks and code spans, where `](` and `#` mean nothing."""
    return CODE_SPAN.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces
    to hyphens (letters, digits, `_` and `-` stay)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").replace("\\", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, title in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        name = slug(title)
        count = seen.get(name, 0)
        seen[name] = count + 1
        found.add(name if count == 0 else f"{name}-{count}")
    return found


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(page: Path) -> list[str]:
    """Each relative link of the page that leads nowhere, with why."""
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if destination in PENDING and not destination.exists():
            continue
        if not destination.exists():
            broken.append(f"{target}: no file {shown(destination)}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {shown(destination)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_leads_to_a_file_and_a_heading_that_exist(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", [p for p in PAGES if p not in NO_TOC], ids=lambda p: str(p.relative_to(ROOT)))
def test_each_docs_page_opens_with_a_table_of_contents(page: Path) -> None:
    """Before the first section: a list of links to the page's own sections."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    before_first_section = text.split("\n## ", 1)[0]
    toc = re.findall(r"^\s*- \[.*\]\(#([^)]+)\)$", before_first_section, re.M)
    assert len(toc) >= 2, f"{page.name}: no table of contents before its first ## section"
    assert set(toc) <= anchors(page)


def test_the_link_checker_finds_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    """The checker itself can fail: a missing file, a missing heading, a pending page that has
    landed with the heading missing."""
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Real part\n\n[ok](#real-part) [gone](missing.md) [wrong](#no-such-part)\n"
        "```\n[in code](nowhere.md)\n```\n`[span](nowhere.md)` [web](https://example.invalid/x.md)\n",
        encoding="utf-8",
    )
    assert [b.split(":")[0] for b in broken_links(page)] == ["missing.md", "#no-such-part"]


def test_github_anchors() -> None:
    assert slug("Process: your function on the newest frame, republished") == (
        "process-your-function-on-the-newest-frame-republished"
    )
    assert slug("processing.run") == "processingrun"
    assert slug("Cameras per box: `make bench-cameras`") == "cameras-per-box-make-bench-cameras"
    assert slug("Don't encode for nobody") == "dont-encode-for-nobody"
    assert slug("\\[\\[camera\\]\\]") == "camera"
    assert (
        slug("Finding where memory goes: `benchmarks.leak_probe`") == "finding-where-memory-goes-benchmarksleak_probe"
    )


def test_the_readme_states_the_test_command_ci_runs() -> None:
    """.ci/run's last command is the README's: a reader who runs it runs what CI runs."""
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    command = ci[-1]
    assert command == "make test-all", ci
    blocks = re.findall(r"^```sh\n(.*?)^```", _readme(), re.M | re.S)
    commands = {line.split("#")[0].strip() for block in blocks for line in block.splitlines()}
    assert command in commands


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_data_path_picture_is_what_the_script_draws() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "diagram.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    svg = ElementTree.parse(ROOT / "docs" / "data-path.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert "](docs/data-path.svg)" in _readme()
