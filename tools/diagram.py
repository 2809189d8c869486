"""docs/data-path.svg, the README's picture of the data path, drawn from the table below.

    python tools/diagram.py            # rewrite docs/data-path.svg
    python tools/diagram.py --check    # exit 1 if the committed picture is not what this draws

Why a script and hand-written SVG: the picture is reviewed like code (a change to a stage's
words is a diff here), and it needs no drawing program or new dependency. The output is
deterministic, so tests/test_docs.py can check the committed file is up to date.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

OUT = Path(__file__).resolve().parents[1] / "docs" / "data-path.svg"
WIDTH, HEIGHT = 1010, 400
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
STAGE_FILL, NODE_FILL, INK, MUTED, ACCENT = "#eef4fb", "#fafafa", "#1f2933", "#52606d", "#2f6fb3"


@dataclass(frozen=True)
class Box:
    """A rectangle with a bold first line and smaller lines under it."""

    x: int
    y: int
    w: int
    h: int
    title: str
    lines: tuple[str, ...] = ()

    @property
    def left(self) -> tuple[int, int]:
        return self.x, self.y + self.h // 2

    @property
    def right(self) -> tuple[int, int]:
        return self.x + self.w, self.y + self.h // 2


# The capture node's three stages, left to right, after the cameras it reads.
CAMERAS = Box(10, 145, 110, 110, "cameras", ("RTSP, USB,", "files, MJPEG,", "test picture"))
STAGES = (
    Box(160, 145, 115, 110, "source", ("grab thread;", "keeps only the", "newest frame")),
    Box(295, 145, 115, 110, "encode", ("JPEG, once per", "frame, however", "many watch")),
    Box(430, 145, 115, 110, "publish", ("a PUB socket", "per camera,", "conflated")),
)
CAPTURE_NODE = Box(145, 100, 415, 190, "capture node", ("edge box",))

# Worker nodes, top to bottom: each subscribes, then hands the newest frame to one sink.
SINKS = (
    ("save", ("JPEGs to disk as they", "came: no re-encode")),
    ("web · display", ("a browser wall, a window,", "top: people watching")),
    ("process · RemoteCapture", ("your code on the newest", "frame; may republish")),
)
# Under the capture node: what travels between the nodes, and the rule every stage keeps.
CAPTION = (
    "Between nodes: ZeroMQ over TCP, one message per frame,",
    "CURVE-encrypted across machines. Every stage keeps only the",
    "newest frame: a slow worker skips frames, it never queues them.",
)
WORKER_X, WORKER_W, WORKER_H, WORKER_GAP, WORKER_TOP = 660, 340, 108, 16, 20


def workers() -> list[tuple[Box, Box, Box]]:
    """(worker node, subscribe, sink) boxes for each sink, stacked."""
    rows = []
    for i, (title, lines) in enumerate(SINKS):
        y = WORKER_TOP + i * (WORKER_H + WORKER_GAP)
        node = Box(WORKER_X, y, WORKER_W, WORKER_H, "worker node")
        subscribe = Box(WORKER_X + 12, y + 28, 96, 70, "subscribe", ("newest frame",))
        sink = Box(WORKER_X + 128, y + 28, 200, 70, title, lines)
        rows.append((node, subscribe, sink))
    return rows


def text(x: int, y: int, words: str, size: int = 12, weight: str = "normal", fill: str = INK) -> str:
    return f'<text x="{x}" y="{y}" font-size="{size}" font-weight="{weight}" fill="{fill}">{escape(words)}</text>'


def stage(box: Box) -> str:
    """A stage: rounded box, title centred, its lines under it."""
    cx = box.x + box.w // 2
    parts = [
        f'<rect x="{box.x}" y="{box.y}" width="{box.w}" height="{box.h}" rx="8" fill="{STAGE_FILL}" stroke="{ACCENT}" stroke-width="1.5"/>',
        f'<g text-anchor="middle">{text(cx, box.y + 22, box.title, 14 if len(box.title) <= 16 else 13, "bold")}',
    ]
    parts += [text(cx, box.y + 42 + 16 * i, line, 12, fill=MUTED) for i, line in enumerate(box.lines)]
    parts.append("</g>")
    return "".join(parts)


def node(box: Box) -> str:
    """A node: a dashed frame with its name at the top left."""
    label = box.title + (f" ({box.lines[0]})" if box.lines else "")
    return (
        f'<rect x="{box.x}" y="{box.y}" width="{box.w}" height="{box.h}" rx="10" fill="{NODE_FILL}" stroke="{MUTED}" stroke-dasharray="6 4"/>'
        + text(box.x + 10, box.y + 18, label, 13, "bold", MUTED)
    )


def arrow(start: tuple[int, int], end: tuple[int, int]) -> str:
    """A left-to-right arrow, curved when the two ends are at different heights."""
    (x1, y1), (x2, y2) = start, end
    mid = (x1 + x2) // 2
    return f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 2},{y2}" fill="none" stroke="{INK}" stroke-width="1.6" marker-end="url(#head)"/>'


def draw() -> str:
    """The whole picture, as SVG text."""
    rows = workers()
    body = [node(CAPTURE_NODE), stage(CAMERAS)]
    body += [stage(box) for box in STAGES]
    chain = (CAMERAS, *STAGES)
    body += [arrow(a.right, b.left) for a, b in zip(chain, chain[1:], strict=False)]
    for worker, subscribe, sink in rows:
        body += [node(worker), stage(subscribe), stage(sink), arrow(STAGES[-1].right, subscribe.left)]
        body.append(arrow(subscribe.right, sink.left))
    bottom = CAPTURE_NODE.y + CAPTURE_NODE.h
    body += [text(CAPTURE_NODE.x, bottom + 26 + 17 * i, line, 12, fill=MUTED) for i, line in enumerate(CAPTION)]
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" {FONT}>',
            "<title>framebus data path: cameras, then source, encode, publish on a capture node; "
            "subscribe and a sink on each worker node</title>",
            "<defs>"
            '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{INK}"/></marker></defs>',
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
            *body,
            "</svg>",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/data-path.svg is out of date")
    args = parser.parse_args(argv)
    picture = draw()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != picture:
            print(f"{OUT.name} is out of date: run python tools/diagram.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(picture, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
