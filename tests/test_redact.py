"""common/redact.py: no password, token or credential in a URL or header survives, whatever its
characters and wherever the URL sits in the text; host, path and other parameters stay readable."""

from __future__ import annotations

import base64
import time
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from framebus.common.redact import is_secret_key, redact


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
        ("rtsp://admin:pa/ss@cam/x", "rtsp://admin:***@cam/x"),
        ("rtsp://admin:a/b?c#d@e@cam:554/x?y=1", "rtsp://admin:***@cam:554/x?y=1"),
        ("rtsp://admin:@cam/x", "rtsp://admin:***@cam/x"),
        ("rtsp://:pw@cam/x", "rtsp://:***@cam/x"),
        ("RTSP://Admin:pw@cam", "RTSP://Admin:***@cam"),
        ("rtsp://u:p@[::1]:554/x", "rtsp://u:***@[::1]:554/x"),
        ("rtsp://admin:pässwörd€@cam/x", "rtsp://admin:***@cam/x"),
        ("http://u:pw@h:8080/a rtsps://v:pw2@h2/b", "http://u:***@h:8080/a rtsps://v:***@h2/b"),
        ("cannot open 'rtsp://u:se'cret@h/x': refused", "cannot open 'rtsp://u:***@h/x': refused"),
        ('source="rtsp://u:se"cret@h/x"', 'source="rtsp://u:***@h/x"'),
        ("<rtsp://u:pw@h/x>", "<rtsp://u:***@h/x>"),
        # a password holding a space: the '@' comes later on the line
        ("rtsp://admin:my pass@cam/x: 401", "rtsp://admin:***@cam/x: 401"),
        # a password the URL cannot even hold (no '@' at all): what follows the colon is no port
        ("rtsp://admin:secret", "rtsp://admin:***"),
        # credentials in the query, fragment and ;params, any case
        ("rtsp://cam/x?password=hunter2&channel=1", "rtsp://cam/x?password=***&channel=1"),
        ("rtsp://cam/x?user=admin&PWD=hunter2", "rtsp://cam/x?user=admin&PWD=***"),
        ("http://cam/video.cgi?passwd=a&b&resolution=640", "http://cam/video.cgi?passwd=***&resolution=640"),
        ("https://cam/x?access_token=eyJhbGc.eyJzdWIi.Sflk", "https://cam/x?access_token=***"),
        (
            "https://b.s3/x.mp4?X-Amz-Credential=AK%2F1&X-Amz-Signature=9f",
            "https://b.s3/x.mp4?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        (
            "http://cam/x?apikey=k1&api_key=k2&apiKey=k3&Auth=k4&key=k5&sig=k6",
            "http://cam/x?apikey=***&api_key=***&apiKey=***&Auth=***&key=***&sig=***",
        ),
        ("rtsp://cam/x#token=abc", "rtsp://cam/x#token=***"),
        ("rtsp://cam/x;password=foo;channel=1", "rtsp://cam/x;password=***;channel=1"),
        ("srt://cam:9000?passphrase=topsecret&latency=200", "srt://cam:9000?passphrase=***&latency=200"),
        ('password="two words" user=x', 'password="***" user=x'),
        # a whole URL %-encoded inside another URL's query
        (
            "http://proxy/view?src=rtsp%3A%2F%2Fadmin%3Apw%2F1%40cam%2Fx%3Ftoken%3Dabc%26ch%3D1",
            "http://proxy/view?src=rtsp%3A%2F%2Fadmin%3A***%40cam%2Fx%3Ftoken%3D***%26ch%3D1",
        ),
        ("next=http%253A%252F%252Fu%253Apw%2540h%252Fx", "next=http%253A%252F%252Fu%253A***%2540h%252Fx"),
        # headers, as FFmpeg prints them at debug level
        ("Authorization: Basic YWRtaW46aHVudGVyMg==", "Authorization: Basic ***"),
        ("Proxy-Authorization: Bearer abc.def.ghi", "Proxy-Authorization: Bearer ***"),
        (
            'Authorization: Digest username="admin", realm="cam", nonce="n", uri="rtsp://cam/x", response="0cc1"',
            "Authorization: Digest ***",
        ),
        ("sent Basic YWRtaW46aHVudGVyMg== to the camera", "sent Basic *** to the camera"),
        ("Bearer abcdefgh1234 rejected", "Bearer *** rejected"),
        ('response="6629fae49393a05397450978507c4ef1", uri=', 'response="***", uri='),
        ("Cookie: session=abc; theme=dark", "Cookie: ***"),
        # JSON and Python reprs of a configuration
        ('{"password": "x y", "user": "u"}', '{"password": "***", "user": "u"}'),
        ("{'token': 12345, 'fps': 5}", "{'token': ***, 'fps': 5}"),
        # no scheme, or a mistyped one: FFmpeg takes it for a file name, and says so
        ("video file 'admin:pw@cam/x' does not exist", "video file 'admin:***@cam/x' does not exist"),
        ("video file 'rtsp:/admin:pw@cam/x' does not exist", "video file 'rtsp:***@cam/x' does not exist"),
        ("rtsp//admin:pw@cam/x", "rtsp//admin:***@cam/x"),
        # ambiguous: host:port/path@x reads like user:password-with-a-slash@x; hide rather than show
        ("http://host:8080/a@b", "http://host:***@b"),
    ],
)
def test_secrets_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_several_urls_in_one_message() -> None:
    text = "cannot open rtsp://a:one@cam1/s (tried rtsp://b:two@cam2:554/s, http://c:three@cam3/mjpg)"
    redacted = redact(text)
    assert redacted == "cannot open rtsp://a:***@cam1/s (tried rtsp://b:***@cam2:554/s, http://c:***@cam3/mjpg)"


@pytest.mark.parametrize(
    "text",
    [
        "rtsp://cam/stream1",
        "rtsp://user@cam/stream1",
        "rtsp://cam:554/stream1",
        "rtsp://[::1]:8554/stream1",
        "rtsp://cam:/x",
        "http://host/a@b",
        "rtsp://cam/x?time=1:2&mail=a@b.example",
        "rtsp://cam/x?channel=1&subtype=0&keyframe=1&author=me&user=admin",
        "/dev/video0",
        "test",
        "",
        "camera door: streaming rtsp://admin:***@cam/x (640x480 @ 30.0 fps)",
        "node.key /etc/framebus/keys/edge1.key_secret: group or others can read this secret key (chmod 600 it)",
        "401 Unauthorized: wrong user or password",
        "401 Unauthorized: the camera needs a user and password",
        "Basic auth failed; the camera wants Digest",
        'WWW-Authenticate: Digest realm="cam", nonce="abc"',
        "[tcp @ 0x55b1b21c6e40] Connection to tcp://127.0.0.1:1?timeout=3000000 failed: Connection refused",
        "[ WARN:0@0.151] global cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available",
        "[ERROR:0@12.5] global cap.cpp:166 open VIDEOIO(V4L2:/dev/video9): can't open camera by index",
        "mkv at 12:30 @ 25 fps",
        "camera door: no frame for 3.1 s (frozen stream); key frames every 2 s",
    ],
)
def test_text_without_a_secret_is_unchanged(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("Password", True),
        ("PWD", True),
        ("passwd", True),
        ("access_token", True),
        ("accessToken", True),
        ("refresh-token", True),
        ("X-Amz-Signature", True),
        ("client_secret", True),
        ("apikey", True),
        ("sig", True),
        ("passphrase", True),
        ("user", False),
        ("username", False),
        ("keyframe", False),
        ("author", False),
        ("signal", False),
        ("channel", False),
        ("bypass", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


# ---------------------------------------------------------------------------- property tests

SCHEMES = ["rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp", "rtp", "mms", "ftp", "ws", "onvif"]
CREDENTIAL_KEYS = [
    "password",
    "Password",
    "PWD",
    "passwd",
    "pass",
    "token",
    "auth",
    "key",
    "apikey",
    "api_key",
    "access_token",
    "sig",
    "X-Amz-Signature",
    "secret",
    "passphrase",
    "authToken",
]
HARMLESS_KEYS = ["channel", "subtype", "user", "profile", "keyframe", "transport", "resolution", "w"]
SPACES = " \t\r\n\f\v"

# Passwords: anything but ASCII whitespace, with the URL delimiters drawn often.
password_chars = st.one_of(
    st.sampled_from(list("/@:%?#;&=+$,!'\"<>[]\\{}|^`~*()")),
    st.characters(exclude_categories=("Cs",), exclude_characters=SPACES),
)
passwords = st.text(password_chars, min_size=1, max_size=24)
users = st.text(st.characters(categories=("L", "N"), include_characters="._-~!$"), max_size=10)
hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9\-]{0,12}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True),
    st.from_regex(r"(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}", fullmatch=True),
    st.sampled_from(["[::1]", "[fe80::1%25eth0]", "[2001:db8::7]"]),
)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
paths = st.lists(st.from_regex(r"[A-Za-z0-9_.\-~]{1,10}", fullmatch=True), max_size=3).map(
    lambda parts: "".join(f"/{p}" for p in parts)
)
# A query secret: no '@' (it would read as the end of a userinfo), no quotes, '&', ';' or '%'
# (those end or quote a value) and no space.
# Nor does it end with a mark that may close the URL (`…?token=abc: refused`): that one mark shows.
query_secrets = st.text(
    st.characters(exclude_characters=SPACES + "@&;%'\"", exclude_categories=("Cs",)), min_size=1, max_size=20
).filter(lambda secret: secret[-1] not in ":,.;)]}>")
harmless_values = st.from_regex(r"[A-Za-z0-9_.\-]{1,8}", fullmatch=True)
# Where a URL sits: alone, in a sentence, quoted, in brackets, before a colon.
contexts = st.sampled_from(
    ["{}", "cannot open {}: 401", "source={} failed", "{}\nnext line", "'{}'", '"{}"', "<{}>", "({})", "[{}]"]
)


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    """A query (with credentials) as written, as it must read redacted, and its secrets."""
    params = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(CREDENTIAL_KEYS), query_secrets, st.just(True)),
                st.tuples(st.sampled_from(HARMLESS_KEYS), harmless_values, st.just(False)),
            ),
            max_size=4,
        )
    )
    if not params:
        return "", "", []
    separators = [draw(st.sampled_from("?#;"))] + [draw(st.sampled_from("&;")) for _ in params[1:]]
    written = "".join(f"{sep}{k}={v}" for sep, (k, v, _) in zip(separators, params, strict=True))
    redacted = "".join(f"{sep}{k}={'***' if s else v}" for sep, (k, v, s) in zip(separators, params, strict=True))
    return written, redacted, [v for _, v, s in params if s]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.sampled_from(SCHEMES),
    users,
    passwords,
    hosts,
    ports,
    paths,
    queries(),
    contexts,
    st.booleans(),
)
def test_no_secret_survives_and_the_rest_stays_readable(
    scheme: str,
    user: str,
    password: str,
    host: str,
    port: str,
    path: str,
    query: tuple[str, str, list[str]],
    context: str,
    encode_password: bool,
) -> None:
    written_query, redacted_query, query_secrets = query
    written_password = quote(password, safe="") if encode_password else password
    url = f"{scheme}://{user}:{written_password}@{host}{port}{path}{written_query}"
    redacted = redact(context.format(url))
    expected = f"{scheme}://{user}:***@{host}{port}{path}{redacted_query}"
    assert redacted == context.format(expected)
    template = context.format(expected)
    for secret in [password, written_password, *query_secrets]:
        if len(secret) >= 3 and secret not in template:  # a short secret may also be part of the host
            assert secret not in redacted


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(SCHEMES), users, passwords, hosts, ports, paths, st.integers(1, 2))
def test_a_percent_encoded_url_inside_another_is_redacted(
    scheme: str, user: str, password: str, host: str, port: str, path: str, times: int
) -> None:
    inner = f"{scheme}://{user}:{password}@{host}{port}{path}"
    encoded = inner
    for _ in range(times):
        encoded = quote(encoded, safe="")
    redacted = redact(f"GET http://proxy.local/view?src={encoded}&ch=1 failed")
    expected = f"{scheme}://{user}:" + "\0" + f"@{host}{port}{path}"
    for _ in range(times):
        expected = quote(expected, safe="")
    expected = expected.replace(quote("\0", safe="") if times == 1 else quote(quote("\0", safe=""), safe=""), "***")
    assert redacted == f"GET http://proxy.local/view?src={expected}&ch=1 failed"


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(users, passwords, st.sampled_from(["Authorization: Basic ", "Proxy-Authorization: Basic ", "Basic "]))
def test_basic_credentials_are_redacted(user: str, password: str, prefix: str) -> None:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    redacted = redact(f"{prefix}{token}\r\nCSeq: 3")
    assert token not in redacted
    assert redacted == f"{prefix}***\r\nCSeq: 3"


URLISH = list("://@%?#&;=\"' ") + ["rtsp://", "%3A%2F%2F", "%40", "password=", "Basic ", "Authorization: "]


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.one_of(st.sampled_from(URLISH), st.text(st.characters(exclude_categories=()), max_size=6)), max_size=20)
)
def test_any_text_is_redacted_without_error_and_redacting_twice_changes_nothing(parts: list[str]) -> None:
    """Lone surrogates included (file names decoded with surrogateescape reach log lines)."""
    text = "".join(parts)
    once = redact(text)
    assert redact(once) == once


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(st.characters(exclude_characters=":=@%'\"", exclude_categories=("Cs",)), max_size=200))
def test_text_without_url_or_key_characters_is_unchanged(text: str) -> None:
    assume("basic" not in text.lower() and "bearer" not in text.lower())
    assert redact(text) == text


@pytest.mark.parametrize(
    "unit", ["://", "a=", "%3A%2F%2F", "@", "rtsp://a:b@", "token=&", "x://a:", "basic ", '"password": "', ":// :@"]
)
def test_hostile_text_costs_linear_time(unit: str) -> None:
    """Reasons and native lines come from outside: no input may cost quadratic time."""
    text = unit * (20_000 // len(unit))
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 2.0


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=40), users, passwords, hosts, paths, queries(), st.text(max_size=40))
def test_no_secret_survives_in_arbitrary_surroundings(
    before: str, user: str, password: str, host: str, path: str, query: tuple[str, str, list[str]], after: str
) -> None:
    written_query, redacted_query, query_secrets = query
    text = f"{before} rtsp://{user}:{password}@{host}{path}{written_query} {after}"
    redacted = redact(text)
    for secret in [password, *query_secrets]:
        if len(secret) >= 3 and secret not in f"{before} rtsp://{user}:***@{host}{path}{redacted_query} {after}":
            assert secret not in redacted


def test_a_public_key_in_a_log_line_is_kept_and_a_password_beside_it_is_not() -> None:
    """A CURVE public key's Z85 text (':' and '@' in it) read as user:password@host, so the
    node's refusal lines hid the very key the admin must look for."""
    import logging

    from framebus.common.logs import FORMAT, RedactingFormatter
    from framebus.common.redact import Public

    key = "u%<Z:lo[=6EJZ<6F9h@!5eR8e^m]t+1Zyota1x]q"
    record = logging.LogRecord(
        "t", logging.WARNING, __file__, 1, "key %s from %s", (Public(key), "rtsp://a:pw@cam/x"), None
    )
    line = RedactingFormatter(FORMAT).format(record)
    assert key in line and "rtsp://a:***@cam/x" in line and ":pw@" not in line
    assert record.args == (key, "rtsp://a:pw@cam/x")  # the record is left as it was
