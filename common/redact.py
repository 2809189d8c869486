"""Keep secrets out of logs: camera URLs often carry passwords."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/\s]*):(?P<password>[^/\s]*)@")


def redact_url(text: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://user:***@host/x (anywhere inside text)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
