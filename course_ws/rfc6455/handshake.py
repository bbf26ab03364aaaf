"""The opening handshake: an HTTP/1.1 Upgrade request and its 101 answer (§4).

A WebSocket connection starts life as an ordinary HTTP request::

    GET /chat HTTP/1.1
    Host: server.example.com
    Upgrade: websocket
    Connection: Upgrade
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
    Sec-WebSocket-Version: 13

and a server that agrees answers ``101 Switching Protocols`` with
``Sec-WebSocket-Accept: base64(SHA-1(key + GUID))``.  After the blank line
that ends the response, both sides stop speaking HTTP and exchange frames.

This module only turns bytes into :class:`Request`/:class:`Response` values
and back, and says whether they are acceptable.  Reading from a socket is the
caller's job; :class:`HttpHeadReader` tells it when a whole head has arrived.

Headers are kept in a plain ``dict`` whose keys are lowercased names (HTTP
names are case-insensitive).  A header repeated on several lines is joined
with ", " which RFC 9110 §5.3 defines as equivalent for list-valued headers
like ``Connection`` or ``Upgrade`` — exactly the ones the handshake inspects.
Heads are decoded as Latin-1: each byte becomes one character, so decoding
never fails, and anything non-ASCII is simply not a valid token later on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .constants import GUID, WEBSOCKET_VERSION
from .errors import HandshakeError, reason_phrase

__all__ = [
    "MAX_HEAD_SIZE",
    "HttpHeadReader",
    "Request",
    "Response",
    "accept_key",
    "build_error_response",
    "build_request",
    "build_response",
    "check_host",
    "check_response",
    "check_version",
    "generate_key",
    "parse_request",
    "parse_response",
    "split_target",
    "validate_request",
]

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]
"""Extra headers: a dict, or (name, value) pairs when a name repeats."""

MAX_HEAD_SIZE = 8192
"""Default limit for a request or response head, like many HTTP servers.

Without a limit, a client that never sends the blank line makes the server
buffer forever (the "slowloris" attack)."""

# RFC 9110 §5.1 and §5.5: header names are tokens, values are visible
# characters, spaces and tabs (plus obs-text, bytes 0x80-0xFF).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_HTTP_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
_STATUS_CODE = re.compile(r"[0-9]{3}")
_REQUEST_PATH = re.compile(r"/[\x21-\x7e]*")  # visible ASCII: no space, no CR/LF
# RFC 3986 §3.3: a path is segments of pchar (unreserved, sub-delims, ":", "@"
# and %XX); "[", "]", "|", "#", "%" alone, spaces and non-ASCII must be encoded.
_TARGET_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
# The query is the application's to read; we only refuse what makes the target
# ambiguous ("#", spaces, controls, non-ASCII). Browsers leave "[]{}|^`\\" raw there.
_TARGET_QUERY = re.compile(r"[\x21\x22\x24-\x7e]*")
_TARGET_SCHEMES = frozenset({"http", "https", "ws", "wss"})

_BAD_REQUEST = 400
_METHOD_NOT_ALLOWED = 405
_UPGRADE_REQUIRED = 426
_HEAD_TOO_LARGE = 431
_BAD_GATEWAY = 502  # the client's verdict on an invalid response


@dataclass(frozen=True)
class Request:
    """A parsed HTTP request head, e.g. ``GET /chat HTTP/1.1``.

    ``headers`` maps lowercased names to values (repeated headers joined
    with ", "); ``version`` is a tuple so that ``version < (1, 1)`` works.
    """

    method: str
    path: str
    version: tuple[int, int]
    headers: dict[str, str]


@dataclass(frozen=True)
class Response:
    """A parsed HTTP response head, e.g. ``HTTP/1.1 101 Switching Protocols``."""

    version: tuple[int, int]
    status: int
    reason: str
    headers: dict[str, str]


def generate_key() -> str:
    """Return a fresh ``Sec-WebSocket-Key``: base64 of 16 random bytes.

    The key is a nonce, not a secret: it only ensures the 101 answer was
    computed for *this* request, so a cached or replayed response can't
    pass for a WebSocket handshake.
    """
    return base64.b64encode(secrets.token_bytes(16)).decode()


def accept_key(key: str) -> str:
    """Compute ``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (§1.3).

    SHA-1 is fine here even though it's broken for signatures: nothing is
    being kept secret, the point is proving the server understood WebSocket.
    """
    digest = hashlib.sha1((key + GUID).encode()).digest()
    return base64.b64encode(digest).decode()


# -- Server side ---------------------------------------------------------------


def parse_request(data: bytes) -> Request:
    """Parse a request head (as returned by :class:`HttpHeadReader`).

    Only the syntax is checked here, raising HandshakeError 400 when the
    head isn't HTTP; whether it is a valid *WebSocket* request is
    :func:`validate_request`'s job, so a server can still serve plain HTTP.
    Anything after the blank line that ends the head is ignored.
    """
    start_line, headers = _parse_head(data, _BAD_REQUEST)
    parts = start_line.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise HandshakeError(_BAD_REQUEST, f"malformed request line {start_line!r}")
    method, path, version = parts
    return Request(method, path, _parse_version(version, _BAD_REQUEST), headers)


def split_target(target: str) -> tuple[str, str]:
    """Split a request target into its path and query; HandshakeError 400 if it is not one.

    Servers route on the path, and ``urllib.parse.urlsplit`` alone is the wrong
    tool for it: it raises ValueError on targets such as ``//[`` or
    ``http://[::1/echo`` (a crash where a 400 belongs), and it reads the
    origin-form ``//evil/echo`` as host ``evil`` and path ``/echo``. So every
    server splits targets here, and only here (RFC 9112 §3.2):

    * origin-form ``/path?query`` (what clients send): split at the first ``?``;
    * absolute-form ``ws://host:port/path?query`` (which a server MUST accept):
      the path and query of the URL, ``/`` if it has no path.

    Anything else (``*``, ``host:port``, a fragment, a path character that must
    be percent-encoded such as ``[`` or ``|``) is refused. The path is *not*
    percent-decoded: a route is matched as it was sent.
    """
    if target.startswith("/"):
        path, _, query = target.partition("?")
    elif "://" in target:
        try:
            parts = urlsplit(target)
        except ValueError as exc:
            raise _bad_target(target, str(exc)) from None
        if parts.scheme.lower() not in _TARGET_SCHEMES:
            raise _bad_target(target, f"scheme {parts.scheme!r} is not http(s) or ws(s)")
        if not parts.netloc:
            raise _bad_target(target, "an absolute URL needs a host")
        if "#" in target:
            raise _bad_target(target, "'#': a fragment has no place in a request")
        path, query = parts.path or "/", parts.query
    else:
        raise _bad_target(target, "it must start with / (or be an absolute http or ws URL)")
    for part, allowed in ((path, _TARGET_PATH), (query, _TARGET_QUERY)):
        match = allowed.match(part)
        end = match.end() if match else 0
        if end < len(part):
            char = part[end]
            if char == "#":
                raise _bad_target(target, "'#': a fragment has no place in a request")
            if char == "%":
                raise _bad_target(target, "'%' must be followed by two hex digits")
            raise _bad_target(target, f"{char!a} must be percent-encoded")
    return path, query


def check_host(request: Request) -> None:
    """Require exactly one non-empty ``Host`` header, or raise HandshakeError 400.

    RFC 9112 §3.2 makes this a 400 for *any* HTTP/1.1 request, and RFC 6455
    §4.2.1 requires it of a handshake: a server behind a shared address (a
    proxy, virtual hosts) cannot know which site was meant without it, and two
    Hosts are a classic request-smuggling trick. Only HTTP/1.0 may omit it.
    """
    host = request.headers.get("host")
    if host is None and request.version < (1, 1):
        return
    if not host or "," in host:  # repeated headers were joined with ", "
        raise HandshakeError(_BAD_REQUEST, "expected exactly one Host header")


def check_version(request: Request) -> None:
    """Require ``Sec-WebSocket-Version: 13``, or raise HandshakeError 426 that names it.

    §4.2.2 wants the refusal to carry ``Sec-WebSocket-Version: 13``, so that a
    client speaking an older draft (8 was common) learns what to retry with;
    a bare 400 would leave it guessing.
    """
    version = request.headers.get("sec-websocket-version")
    if version != WEBSOCKET_VERSION:
        raise HandshakeError(
            _UPGRADE_REQUIRED,
            f"Sec-WebSocket-Version is {version!r}, expected {WEBSOCKET_VERSION!r}",
            headers=[("Sec-WebSocket-Version", WEBSOCKET_VERSION)],
        )


def validate_request(request: Request) -> str:
    """Check a request is a WebSocket handshake; return its ``Sec-WebSocket-Key``.

    The checks follow the list in RFC 6455 §4.2.1 in order.  Each failure
    raises a HandshakeError whose reason names the offending header; all are
    400 Bad Request except two, which say what would work instead: another
    method gets 405 Method Not Allowed with ``Allow: GET``, and an unsupported
    version gets 426 Upgrade Required with ``Sec-WebSocket-Version: 13``
    (§4.2.2), so that the client can retry with a version we speak.
    """
    headers = request.headers
    if request.method != "GET":
        raise HandshakeError(
            _METHOD_NOT_ALLOWED,
            f"method is {request.method}, expected GET",
            headers=[("Allow", "GET")],
        )
    if request.version < (1, 1):
        major, minor = request.version
        raise HandshakeError(_BAD_REQUEST, f"HTTP/{major}.{minor} is too old, expected HTTP/1.1")
    check_host(request)
    _require_token(headers, "Upgrade", "websocket", _BAD_REQUEST)
    _require_token(headers, "Connection", "upgrade", _BAD_REQUEST)
    key = headers.get("sec-websocket-key")
    if key is None:
        raise HandshakeError(_BAD_REQUEST, "missing Sec-WebSocket-Key header")
    try:
        raw_key = base64.b64decode(key, validate=True)
    except binascii.Error:
        raw_key = b""
    if len(raw_key) != 16:
        raise HandshakeError(
            _BAD_REQUEST, f"Sec-WebSocket-Key must be base64 of 16 bytes, got {key!r}"
        )
    check_version(request)
    return key


def build_response(key: str, *, extra_headers: HeadersLike = ()) -> bytes:
    """Build the ``101 Switching Protocols`` answer to a validated request.

    ``extra_headers`` is where a server would add ``Sec-WebSocket-Protocol``
    after choosing a subprotocol, or ``Server``; this codec negotiates no
    extension, so it never sends ``Sec-WebSocket-Extensions``.
    """
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
        *_header_items(extra_headers),
    ]
    return _format_head("HTTP/1.1 101 Switching Protocols", headers)


def build_error_response(status: int, reason: str, *, extra_headers: HeadersLike = ()) -> bytes:
    """Build a complete plain-text HTTP error response, body included.

    Meant for ``HandshakeError(status, reason, headers)``.  ``Connection:
    close`` tells the client not to reuse the connection: after a failed
    handshake the server simply hangs up.
    """
    body = f"{reason}\n".encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *_header_items(extra_headers),
    ]
    return _format_head(f"HTTP/1.1 {status} {reason_phrase(status)}", headers) + body


# -- Client side ---------------------------------------------------------------


def build_request(
    host: str,
    path: str = "/",
    *,
    key: str | None = None,
    origin: str | None = None,
    extra_headers: HeadersLike = (),
) -> tuple[bytes, str]:
    """Build a handshake request; return its bytes and the key it carries.

    The caller keeps the key to check the server's answer with
    :func:`check_response`.  ``host`` is the ``Host`` header, with the port
    when it isn't 80 (``"localhost:8765"``).  ``origin`` is what browsers
    send so that servers can refuse cross-site connections; scripts usually
    omit it.  Pass ``key`` only to reproduce a known exchange (RFC examples).
    """
    if not _REQUEST_PATH.fullmatch(path):
        raise ValueError(f"invalid request path {path!r}, percent-encode it")
    key = generate_key() if key is None else key
    headers = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
    ]
    if origin is not None:
        headers.append(("Origin", origin))
    headers.extend(_header_items(extra_headers))
    return _format_head(f"GET {path} HTTP/1.1", headers), key


def parse_response(data: bytes) -> Response:
    """Parse a response head; raise HandshakeError 502 if it isn't HTTP.

    502 Bad Gateway is HTTP's name for "the server I talked to answered
    nonsense", which is the client's situation here.  Anything after the
    blank line that ends the head (a body) is ignored.
    """
    start_line, headers = _parse_head(data, _BAD_GATEWAY)
    version, _, rest = start_line.partition(" ")
    status, _, reason = rest.partition(" ")
    if not _STATUS_CODE.fullmatch(status):
        raise HandshakeError(_BAD_GATEWAY, f"malformed status line {start_line!r}")
    return Response(_parse_version(version, _BAD_GATEWAY), int(status), reason, headers)


def check_response(data: bytes, key: str) -> Response:
    """Parse the server's answer and check it accepts *our* handshake.

    A non-101 status raises HandshakeError with that status (a 403 stays a
    403).  A 101 with a wrong ``Upgrade``, ``Connection`` or
    ``Sec-WebSocket-Accept``, or one that enables an extension we never
    offered (§4.1: the client must then fail the connection), raises with
    502.  The accept mismatch shows both values.
    """
    response = parse_response(data)
    if response.status != 101:
        raise HandshakeError(
            response.status,
            f"server answered {response.status} {response.reason}, "
            "expected 101 Switching Protocols",
        )
    headers = response.headers
    _require_token(headers, "Upgrade", "websocket", _BAD_GATEWAY)
    _require_token(headers, "Connection", "upgrade", _BAD_GATEWAY)
    expected = accept_key(key)
    got = headers.get("sec-websocket-accept")
    if got is None:
        raise HandshakeError(_BAD_GATEWAY, f"missing Sec-WebSocket-Accept, expected {expected!r}")
    if got != expected:
        raise HandshakeError(
            _BAD_GATEWAY, f"Sec-WebSocket-Accept is {got!r}, expected {expected!r}"
        )
    if "sec-websocket-extensions" in headers:
        raise HandshakeError(
            _BAD_GATEWAY,
            "Sec-WebSocket-Extensions is "
            f"{headers['sec-websocket-extensions']!r} but we offered no extension",
        )
    return response


# -- Reading a head from a stream -----------------------------------------------


class HttpHeadReader:
    """Collect bytes from a stream until a whole HTTP head has arrived.

    TCP delivers a byte stream, not messages: the head may arrive in many
    pieces, and the first frames may arrive glued to its end (a server can
    send a message right after its 101).  So :meth:`feed` returns both the
    head and whatever followed it, which belongs to the frame decoder.

    The search resumes where the previous one stopped, so feeding a head one
    byte at a time stays linear, and heads over ``max_size`` are refused
    with HandshakeError 431 (Request Header Fields Too Large).
    """

    def __init__(self, max_size: int = MAX_HEAD_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, bytes] | None:
        """Add received bytes; return ``(head, rest)`` once the head is complete.

        ``head`` ends with the blank line ``\\r\\n\\r\\n``; ``rest`` holds the
        bytes that came after it.  Returns None while more bytes are needed.
        """
        # The terminator may straddle two pieces: back up by 3 bytes.
        start = max(0, len(self._buffer) - 3)
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n", start)
        head_size = len(self._buffer) if end == -1 else end + 4
        if head_size > self.max_size:
            raise HandshakeError(_HEAD_TOO_LARGE, f"HTTP head is larger than {self.max_size} bytes")
        if end == -1:
            return None
        head, rest = bytes(self._buffer[:head_size]), bytes(self._buffer[head_size:])
        self._buffer.clear()
        return head, rest


# -- Helpers -------------------------------------------------------------------


def _parse_head(data: bytes, error_status: int) -> tuple[str, dict[str, str]]:
    """Split a head into its start line and headers; ignore what follows it."""
    text, _, _ = data.decode("latin-1").partition("\r\n\r\n")
    start_line, *lines = text.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        # No space is allowed before the colon (RFC 9112 §5.1), and a line
        # starting with a space (obsolete line folding) has no valid name.
        name, colon, value = line.partition(":")
        value = value.strip(" \t")
        if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise HandshakeError(error_status, f"malformed header line {line!r}")
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return start_line, headers


def _bad_target(target: str, why: str) -> HandshakeError:
    """A 400 that quotes the start of ``target`` (it may be 8 KiB long) and says why."""
    shown = ascii(target[:60]) + ("..." if len(target) > 60 else "")
    return HandshakeError(_BAD_REQUEST, f"bad request target {shown}: {why}")


def _parse_version(text: str, error_status: int) -> tuple[int, int]:
    """Parse ``HTTP/1.1`` into ``(1, 1)``."""
    match = _HTTP_VERSION.fullmatch(text)
    if match is None:
        raise HandshakeError(error_status, f"malformed HTTP version {text!r}")
    return int(match[1]), int(match[2])


def _require_token(headers: dict[str, str], name: str, token: str, error_status: int) -> None:
    """Require a comma-separated header to contain ``token``, ignoring case.

    ``Connection: keep-alive, Upgrade`` (Firefox sends that) must pass: these
    headers are lists, so comparing the whole value would be a bug.
    """
    value = headers.get(name.lower())
    if value is None:
        raise HandshakeError(error_status, f"missing {name} header, expected {token!r}")
    if token not in (item.strip().lower() for item in value.split(",")):
        raise HandshakeError(error_status, f"{name} header is {value!r}, expected {token!r}")


def _header_items(headers: HeadersLike) -> list[tuple[str, str]]:
    """Accept headers as a mapping or as pairs (which allow repeated names)."""
    return list(headers.items() if isinstance(headers, Mapping) else headers)


def _format_head(start_line: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """Serialize a head, refusing CR/LF in values (header injection)."""
    lines = [start_line]
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
