"""common/redact.py: passwords in camera URLs never reach a log line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.redact import redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://user:pass@host/path", "rtsp://user:***@host/path"),
        ("rtsp://admin:s3cr3t@10.0.0.7:554/stream1", "rtsp://admin:***@10.0.0.7:554/stream1"),
        ("rtsp://admin:pa!ss@cam/x", "rtsp://admin:***@cam/x"),
        ("rtsp://admin:pa#ss@cam/x", "rtsp://admin:***@cam/x"),
        ("rtsp://admin:pa%40ss@cam/x", "rtsp://admin:***@cam/x"),
        ("rtsp://admin:p:a;s$s&=+,?@cam/x", "rtsp://admin:***@cam/x"),
        ("rtsp://admin:p@ss@cam/x", "rtsp://admin:***@cam/x"),  # unencoded '@': ffmpeg splits at the last one
        ("rtsp://admin:@cam/x", "rtsp://admin:***@cam/x"),
        ("RTSP://Admin:pw@cam", "RTSP://Admin:***@cam"),
        ("http://u:pw@h:8080/a rtsps://v:pw2@h2/b", "http://u:***@h:8080/a rtsps://v:***@h2/b"),
    ],
)
def test_password_is_redacted(text: str, expected: str) -> None:
    assert redact_url(text) == expected


def test_several_urls_in_one_message() -> None:
    text = "cannot open rtsp://a:one@cam1/s (tried rtsp://b:two@cam2:554/s, http://c:three@cam3/mjpg)"
    redacted = redact_url(text)
    assert redacted == "cannot open rtsp://a:***@cam1/s (tried rtsp://b:***@cam2:554/s, http://c:***@cam3/mjpg)"
    for secret in ("one", "two", "three"):
        assert secret not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "rtsp://cam/stream1",
        "rtsp://user@cam/stream1",
        "rtsp://cam:554/stream1",
        "http://host:8080/a@b",
        "/dev/video0",
        "test",
        "user:pass@host",  # no scheme: not a URL
        "",
    ],
)
def test_text_without_a_password_is_unchanged(text: str) -> None:
    assert redact_url(text) == text


def visible(excluded: str) -> st.SearchStrategy[str]:
    return st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=excluded)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.sampled_from(["rtsp", "rtsps", "http", "https"]),
    st.text(visible(":@/"), max_size=10),
    st.text(visible("/"), min_size=6, max_size=20),  # '@' included: people do not percent-encode
    st.text(visible(""), max_size=10),
)
def test_no_password_survives(scheme: str, user: str, password: str, path: str) -> None:
    text = f"opening {scheme}://{user}:{password}@camera.local/{path} failed"
    redacted = redact_url(text)
    assert redacted == f"opening {scheme}://{user}:***@camera.local/{path} failed"
