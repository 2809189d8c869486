"""Keep secrets out of everything framebus prints or sends: camera URLs carry passwords and
tokens, and FFmpeg's own messages can carry URLs and authorization headers.

`redact(text)` is the one function every output path calls (log lines, status and describe
reasons, native output of camera processes, argparse errors, what workers show of a node's
reasons). It works on arbitrary text, finds every URL in it and hides:
  - the password of `scheme://user:password@host`, split at the LAST `@` (FFmpeg does the same),
    so a password may hold `/ ? # @ :`, %-escapes and any non-space character. The user stays.
  - the same inside a percent-encoded URL (`rtsp%3A%2F%2Fuser%3Apw%40host`), and without a
    scheme or with a mistyped one (`user:pw@host/x`, `rtsp:/user:pw@host`).
  - values of credential parameters (`password=`, `token=`, `access_token=`, `X-Amz-Signature=`
    …, any case) in queries, fragments, `;params` and quoted `"key": "value"` pairs.
  - `Authorization:`-type headers, `Basic <user:pass in base64>`, `Bearer <token>` and Digest
    responses.
When in doubt it hides too much rather than too little (`http://host:8080/a@b` loses its port
and path: it reads the same as a password that starts with digits and holds a `/`). Host,
path and other parameters stay readable. Its cost is linear in the text's length, whatever the
text: reasons come from peers.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import re

MASK = "***"

_SEPARATOR = re.compile(r"://|%(?:25)*3a%(?:25)*2f%(?:25)*2f", re.IGNORECASE)
_SPACE = re.compile(r"[ \t\r\n\f\v]")  # unicode spaces may sit in a password: only ASCII ends a URL
_AT = {False: re.compile("@"), True: re.compile(r"@|%(?:25)*40", re.IGNORECASE)}
_COLON = {False: re.compile(":"), True: re.compile(r":|%(?:25)*3a", re.IGNORECASE)}
_AUTHORITY_END = {False: re.compile(r"[/?#]"), True: re.compile(r"[/?#]|%(?:25)*(?:2f|3f|23)", re.IGNORECASE)}
# A port, and the marks that may close the URL in a sentence (`tcp://host:5555: no reply`).
_PORT = re.compile(r"(?:\d{0,5}|\*)[:,.;)\]}>'\"]{0,3}")  # `*`: ZeroMQ's any free port
_BARE_IPV6 = re.compile(r"[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*")
_NEWLINE = re.compile("\n")
_TOKEN = re.compile(r"[^ \t\r\n\f\v]+")
_OPENCV_TAG = re.compile(r"\[?[A-Z]+:\d+@[\d.]+\]")  # [ WARN:0@0.151]: a thread and a time, no password

# Credential parameters. A key is a secret when one of its words (snake, kebab, dotted or camel
# case) is in _SECRET_WORDS, or when it ends in one of _SECRET_ENDINGS (apikey, accesstoken).
_SECRET_WORDS = frozenset(
    "password passwd pwd pass passphrase pw token auth authorization key secret sig signature "
    "credential credentials session sessionid sid jwt cookie otp pin".split()
)
_SECRET_ENDINGS = ("password", "passwd", "pwd", "token", "key", "secret", "signature", "credential", "credentials")
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_KEY = r"[A-Za-z0-9_.\-\[\]]{1,64}"
_EQUALS = r"(?:=|%(?:25)*3d)"
_NEXT = r"(?:[&;]|%(?:25)*(?:26|3b))"
_CLOSING_MARKS = frozenset(":,.;)]}>'\"")
_EQUALS_SIGN = re.compile(_EQUALS, re.IGNORECASE)
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-[]")
# A value runs to whitespace or to an `&` or `;` that starts the next `key=`: an `&` inside a
# password (`password=a&b`) stays hidden with the rest.
_VALUE = re.compile(rf"(?:[^ \t\r\n\f\v&;%]|%(?!(?:25)*(?:26|3b))|{_NEXT}(?!{_KEY}{_EQUALS}))+", re.IGNORECASE)
# "password": "x", 'token': 'y', "pin": 1234 (JSON, Python reprs).
_QUOTED_PAIR = re.compile(
    r"""(?P<q>["'])(?P<key>[A-Za-z0-9_.\-]{1,64})(?P=q)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.){0,512}"|'(?:[^'\\\n]|\\.){0,512}'|[^\s,;}\])]+)"""
)
_HEADER_NAMES = ("authorization", "api-key", "auth-token", "cookie")
_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization|\bx-api-key|\bapi-key|\bx-auth-token|\bset-cookie|\bcookie)"
    r"(?P<sep>\s*:[ \t]+)(?P<scheme>(?:basic|bearer|digest|negotiate|ntlm|token)\s+)?(?P<value>[^\r\n]+)",
    re.IGNORECASE,
)
_BASIC = re.compile(r"\b(?P<scheme>basic\s+)(?P<value>[A-Za-z0-9+/]{2,}={0,2})(?![A-Za-z0-9+/=])", re.IGNORECASE)
_BEARER = re.compile(r"\b(?P<scheme>bearer\s+)(?P<value>[A-Za-z0-9\-._~+/]{8,}=*)", re.IGNORECASE)
_DIGEST_RESPONSE = re.compile(r"\b(?P<key>response\s*=\s*)\"?[0-9a-f]{32,}\"?", re.IGNORECASE)


class Public(str):
    """A value known to hold no secret, kept as is by the log formatter: a CURVE public key's
    Z85 text has ':' and '@' and would otherwise read as `user:password@host`."""


def redact(text: str) -> str:
    """`text` with every password, token and credential in it replaced by ***."""
    return _redact_short(text) if len(text) <= _CACHED_LENGTH else _redact(text)


_CACHED_LENGTH = 512  # a status reason's limit: reasons repeat every second, redact each once


@functools.lru_cache(maxsize=1024)
def _redact_short(text: str) -> str:
    return _redact(text)


def _redact(text: str) -> str:
    lower = text.lower()
    if "://" in text or "%" in text:
        text = _redact_userinfo(text)
    if "@" in text:
        text = _TOKEN.sub(_bare_userinfo, text)
    if any(name in lower for name in _HEADER_NAMES):
        text = _HEADER.sub(lambda m: f"{m['name']}{m['sep']}{m['scheme'] or ''}{MASK}", text)
    if "basic" in lower:
        text = _BASIC.sub(_basic, text)
    if "bearer" in lower:
        text = _BEARER.sub(lambda m: f"{m['scheme']}{MASK}", text)
    if "response" in lower:
        text = _DIGEST_RESPONSE.sub(lambda m: f'{m["key"]}"{MASK}"', text)
    if "'" in text or '"' in text:
        text = _QUOTED_PAIR.sub(_quoted_pair, text)
    if "=" in text or "%" in text:
        text = _redact_params(text)
    return text


def is_secret_key(key: str) -> bool:
    """password, api_key, accessToken, X-Amz-Signature: yes. user, keyframe, author: no."""
    words = {w.lower() for w in _WORD.findall(key)}
    joined = re.sub(r"[^a-z0-9]", "", key.lower())
    return bool(words & _SECRET_WORDS) or joined in _SECRET_WORDS or joined.endswith(_SECRET_ENDINGS)


def _redact_params(text: str) -> str:
    out: list[str] = []
    done = 0
    search_from = 0
    while m := _EQUALS_SIGN.search(text, search_from):
        search_from = m.end()  # a harmless key's value may hold a %-encoded URL: search it too
        if m.start() < done or not _secret_key_before(text, m.start()):
            continue
        quoted_end = _quoted_end(text, m.end())
        if quoted_end:  # password="a b": keep the quotes, hide what is between them
            out += [text[done : m.end() + 1], MASK, text[m.end()]]
            done = search_from = quoted_end
        elif value := _VALUE.match(text, m.end()):
            out += [text[done : m.end()], MASK]
            done = search_from = _without_closing_marks(text, m.end(), value.end())
    out.append(text[done:])
    return "".join(out)


def _secret_key_before(text: str, end: int) -> bool:
    """Is the key that ends at `end` (`...&KEY=`) a credential's? Also `%3FKEY` (encoded `?`)."""
    start = end
    while start > 0 and end - start < 64 and text[start - 1] in _KEY_CHARS:
        start -= 1
    key = text[start:end]
    if not key:
        return False
    if start > 0 and text[start - 1] == "%" and len(key) > 2:
        return is_secret_key(key[2:]) or is_secret_key(key)
    return is_secret_key(key)


def _without_closing_marks(text: str, start: int, end: int) -> int:
    """`…?token=abc: refused`, `['…?token=abc']`: up to 3 marks that close the URL are not part
    of the value (a secret that really ends with such marks shows only those marks)."""
    if end < len(text) and text[end] not in " \t\r\n\f\v":
        return end
    marks = 0
    while marks < 3 and end - marks - 1 > start and text[end - marks - 1] in _CLOSING_MARKS:
        marks += 1
    return end - marks


def _quoted_end(text: str, start: int) -> int:
    """The end of a quoted value (`password="a b"`) beginning at start, or 0."""
    quote = text[start : start + 1]
    if not quote or quote not in "\"'":
        return 0
    line_end = text.find("\n", start)
    close = text.find(quote, start + 1, line_end if line_end >= 0 else len(text))
    return close + 1 if close > 0 else 0


def _quoted_pair(m: re.Match[str]) -> str:
    if not is_secret_key(m["key"]):
        return m[0]
    value = m["value"]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{m['q']}{m['key']}{m['q']}{m['sep']}{quote}{MASK}{quote}"


def _basic(m: re.Match[str]) -> str:
    """Only real Basic credentials (base64 of user:password): "Basic auth failed" stays."""
    try:
        decoded = base64.b64decode(m["value"], validate=True)
    except (binascii.Error, ValueError):
        return m[0]
    return f"{m['scheme']}{MASK}" if b":" in decoded else m[0]


class _Marks:
    """Where the characters that delimit URL parts are in one text, found once, so that text
    with thousands of URLs (or of `://`) costs linear time, not quadratic."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._found: dict[re.Pattern[str], tuple[list[int], list[int]]] = {}

    def _spans(self, pattern: re.Pattern[str]) -> tuple[list[int], list[int]]:
        if pattern not in self._found:
            matches = list(pattern.finditer(self.text))
            self._found[pattern] = ([m.start() for m in matches], [m.end() for m in matches])
        return self._found[pattern]

    def first(self, pattern: re.Pattern[str], start: int, limit: int) -> tuple[int, int] | None:
        """The first match beginning in [start, limit), as (start, end)."""
        starts, ends = self._spans(pattern)
        i = bisect.bisect_left(starts, start)
        return (starts[i], ends[i]) if i < len(starts) and starts[i] < limit else None

    def last(self, pattern: re.Pattern[str], start: int, limit: int) -> int | None:
        """Where the last match beginning in [start, limit) begins."""
        starts, _ = self._spans(pattern)
        i = bisect.bisect_left(starts, limit) - 1
        return starts[i] if i >= 0 and starts[i] >= start else None


def _bare_userinfo(m: re.Match[str]) -> str:
    """user:password@host without a scheme (`--source admin:pw@cam/x`, `rtsp:/admin:pw@cam`)."""
    token = m[0]
    at = token.rfind("@")
    colon = token.find(":", 0, at) if at > 0 else -1
    if colon < 0 or MASK in token[colon + 1 : at] or _SEPARATOR.search(token) or _OPENCV_TAG.fullmatch(token):
        return token
    if any(c in token[:colon] for c in "?#"):
        return token  # the colon is in a query: not a password
    return f"{token[: colon + 1]}{MASK}{token[at:]}"


def _redact_userinfo(text: str) -> str:
    out: list[str] = []
    done = 0  # text[:done] is in out
    search_from = 0
    marks = _Marks(text)
    while m := _SEPARATOR.search(text, search_from):
        span = _password_span(marks, m.end(), encoded=m[0] != "://")
        if span is None:
            search_from = m.end()  # a %-encoded URL may sit in this one's query
            continue
        first, last = span
        out += [text[done:first], MASK]
        done = search_from = last
    out.append(text[done:])
    return "".join(out)


def _password_span(marks: _Marks, start: int, encoded: bool) -> tuple[int, int] | None:
    """Where the password of the URL whose authority begins at `start` is, or None."""
    text = marks.text
    space = marks.first(_SPACE, start, len(text))
    end = space[0] if space else len(text)  # the URL's end
    at = marks.last(_AT[encoded], start, end)
    if at is not None:
        colon = marks.first(_COLON[encoded], start, at)
        path = marks.first(_AUTHORITY_END[encoded], start, at)
        if colon is None or (path is not None and path[0] < colon[0]):
            return None  # a user without password, or an '@' in the path or query
        return colon[1], at
    # No '@': a colon followed by something that is not a port starts a password that holds a
    # space (its '@' comes later on the line) or one the URL cannot hold.
    path = marks.first(_AUTHORITY_END[encoded], start, end)
    authority_end = path[0] if path else end
    host_end = text.find("]", start, authority_end) + 1 if text.startswith("[", start) else start  # [IPv6]
    colon = marks.first(_COLON[encoded], max(start, host_end), authority_end)
    if colon is None or _PORT.fullmatch(text, colon[1], _without_closing_marks(text, colon[1], authority_end)):
        return None  # no colon, or a port (`tcp://host:5555: refused` ends the URL at the port)
    if _BARE_IPV6.fullmatch(text, start, authority_end):
        return None  # tcp://::1:5555, an IPv6 address someone forgot to bracket: no password
    newline = marks.first(_NEWLINE, start, len(text))
    at = marks.last(_AT[encoded], start, newline[0] if newline else len(text))
    return colon[1], at if at is not None else end
