"""docs/config.md is generated from the config schema: the committed page must be the one
docs/config_reference.py writes, so a field added, bounded or described anew shows up there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec

from framebus.capture_node.schema import CameraConfig, NodeSettings

ROOT = Path(__file__).resolve().parent.parent


def test_committed_reference_is_the_generated_one() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "config_reference.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr + "\nrun: python docs/config_reference.py"


def test_every_field_is_in_the_reference() -> None:
    page = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    for table in (NodeSettings, CameraConfig):
        for field in msgspec.structs.fields(table):
            assert f"| `{field.encode_name}` |" in page, field.encode_name
