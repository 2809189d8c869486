"""The README's `processing.run(...)` one-liner, run for real against a capture node: it must
show its results without the script configuring logging, and leave a script's own logging
configuration alone."""

from __future__ import annotations

import re
import signal
import sys

from tests.support.processes import ROOT, Processes


def readme_snippet() -> str:
    """The README's Python block that calls processing.run."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (snippet,) = [b for b in blocks if "processing.run(" in b]
    return snippet


def runnable(snippet: str, control: str) -> str:
    """The snippet pointed at the test's node, its own describe endpoint on any free port."""
    assert 'node="tcp://127.0.0.1:5555"' in snippet and 'camera="door")' in snippet, snippet
    return snippet.replace("tcp://127.0.0.1:5555", control).replace(
        'camera="door")', 'camera="door", control="tcp://127.0.0.1:*")'
    )


def test_the_readme_one_liner_shows_its_results(nodes: Processes) -> None:
    _, control = nodes.capture("--camera-id", "door", "--width", "320", "--height", "240", "--fps", "10")
    script = nodes.start_argv([sys.executable, "-c", runnable(readme_snippet(), control)])
    line = script.wait_for(r"INFO worker_node\.processing: camera door: frame \d+ results \{'mean': [\d.]+\}", 30)
    assert line
    assert script.stop(signal.SIGINT) < 5
    assert script.proc.returncode == 0
    assert "Traceback" not in script.output


def test_a_scripts_own_logging_is_left_alone(nodes: Processes) -> None:
    _, control = nodes.capture("--camera-id", "door", "--width", "320", "--height", "240", "--fps", "10")
    code = (
        "import logging\n"
        'logging.basicConfig(level=logging.INFO, format="MINE %(levelname)s %(message)s")\n'
        + runnable(readme_snippet(), control)
    )
    script = nodes.start_argv([sys.executable, "-c", code])
    script.wait_for(r"^MINE INFO camera door: frame \d+ results \{'mean': [\d.]+\}", 30)
    assert script.stop(signal.SIGINT) < 5
    assert [line for line in script.lines if not line.startswith("MINE ")] == [], "one handler, the script's"
