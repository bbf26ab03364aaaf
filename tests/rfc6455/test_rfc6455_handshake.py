"""Opening handshake: keys, requests, responses, and every validation failure."""

import base64

import pytest

from course_ws.rfc6455 import (
    HandshakeError,
    HttpHeadReader,
    Request,
    accept_key,
    build_error_response,
    build_request,
    build_response,
    check_host,
    check_response,
    generate_key,
    parse_request,
    parse_response,
    split_target,
    validate_request,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

CHROMIUM_REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: localhost:8000\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    b"(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://localhost:8000\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: sessionid=abc123\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)


def request_with(**changes: str | None) -> bytes:
    """A valid request with headers replaced (str) or removed (None).

    Keyword names use underscores for dashes: ``Sec_WebSocket_Key="..."``.
    The request line is replaced with ``start_line``.
    """
    lines = [
        "GET /chat HTTP/1.1",
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {RFC_KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if "start_line" in changes:
        lines[0] = changes.pop("start_line") or ""
    for name, value in changes.items():
        header = name.replace("_", "-")
        lines = [line for line in lines if not line.startswith(f"{header}:")]
        if value is not None:
            lines.append(f"{header}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def handshake_error(request: bytes) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        validate_request(parse_request(request))
    return info.value


# -- Keys ------------------------------------------------------------------------


def test_accept_key_rfc_example() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_generate_key_is_base64_of_16_fresh_bytes() -> None:
    keys = {generate_key() for _ in range(10)}
    assert all(len(base64.b64decode(key, validate=True)) == 16 for key in keys)
    assert len(keys) == 10


# -- Server side -------------------------------------------------------------------


def test_chromium_request_is_accepted() -> None:
    request = parse_request(CHROMIUM_REQUEST)
    assert request == Request(
        method="GET",
        path="/chat?room=1",
        version=(1, 1),
        headers=request.headers,
    )
    assert request.headers["sec-websocket-extensions"].startswith("permessage-deflate")
    assert validate_request(request) == RFC_KEY


def test_firefox_connection_token_list_is_accepted() -> None:
    assert (
        validate_request(parse_request(request_with(Connection="keep-alive, Upgrade"))) == RFC_KEY
    )


def test_header_names_and_tokens_are_case_insensitive() -> None:
    data = request_with(Upgrade="WebSocket", Connection="upgrade").replace(b"Host:", b"HOST:")
    assert validate_request(parse_request(data)) == RFC_KEY


def test_repeated_headers_are_joined_as_a_list() -> None:
    data = request_with(Connection="keep-alive").replace(
        b"\r\n\r\n", b"\r\nConnection: Upgrade\r\n\r\n"
    )
    request = parse_request(data)
    assert request.headers["connection"] == "keep-alive, Upgrade"
    assert validate_request(request) == RFC_KEY


@pytest.mark.parametrize(
    ("changes", "status", "mentions"),
    [
        pytest.param({"start_line": "POST /chat HTTP/1.1"}, 405, "GET", id="method-not-GET"),
        pytest.param({"start_line": "GET /chat HTTP/1.0"}, 400, "HTTP/1.0", id="http-1.0"),
        pytest.param({"Host": None}, 400, "Host", id="missing-host"),
        pytest.param({"Upgrade": None}, 400, "Upgrade", id="missing-upgrade"),
        pytest.param({"Upgrade": "h2c"}, 400, "Upgrade", id="upgrade-not-websocket"),
        pytest.param({"Connection": None}, 400, "Connection", id="missing-connection"),
        pytest.param({"Connection": "keep-alive"}, 400, "Connection", id="connection-no-upgrade"),
        pytest.param({"Sec_WebSocket_Key": None}, 400, "Sec-WebSocket-Key", id="missing-key"),
        pytest.param(
            {"Sec_WebSocket_Key": "not base64!"}, 400, "Sec-WebSocket-Key", id="key-not-base64"
        ),
        pytest.param(
            {"Sec_WebSocket_Key": base64.b64encode(b"x" * 15).decode()},
            400,
            "Sec-WebSocket-Key",
            id="key-15-bytes",
        ),
        pytest.param(
            {"Sec_WebSocket_Key": base64.b64encode(b"x" * 17).decode()},
            400,
            "Sec-WebSocket-Key",
            id="key-17-bytes",
        ),
        pytest.param({"Sec_WebSocket_Version": "8"}, 426, "Sec-WebSocket-Version", id="version-8"),
        pytest.param(
            {"Sec_WebSocket_Version": None}, 426, "Sec-WebSocket-Version", id="missing-version"
        ),
    ],
)
def test_invalid_handshake_request(changes: dict[str, str | None], status: int, mentions: str):
    error = handshake_error(request_with(**changes))
    assert error.status == status
    assert mentions in error.reason


def test_other_method_is_405_with_allow_get() -> None:
    """§4.1: the handshake is a GET; 405 + Allow is HTTP's name for "this resource only GETs"."""
    error = handshake_error(request_with(start_line="PUT /chat HTTP/1.1"))
    assert error.headers == (("Allow", "GET"),)


@pytest.mark.parametrize("host", [None, "", "a, b"], ids=["missing", "empty", "two"])
def test_check_host_wants_exactly_one_host(host: str | None) -> None:
    """RFC 9112 §3.2: any HTTP/1.1 request without exactly one Host is a 400, not just upgrades."""
    headers = {} if host is None else {"host": host}
    with pytest.raises(HandshakeError) as info:
        check_host(Request("GET", "/healthz", (1, 1), headers))
    assert info.value.status == 400
    assert "Host" in info.value.reason


def test_check_host_lets_http_1_0_without_host_through() -> None:
    check_host(Request("GET", "/healthz", (1, 0), {}))
    check_host(Request("GET", "/healthz", (1, 1), {"host": "localhost:8000"}))


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/", "/", ""),
        ("/echo", "/echo", ""),
        ("/chat/lobby?user=ada&since=3", "/chat/lobby", "user=ada&since=3"),
        ("/chat/lobby?", "/chat/lobby", ""),
        ("/a%20b/c-d_e.f~g!$&'()*+,;=:@", "/a%20b/c-d_e.f~g!$&'()*+,;=:@", ""),
        ("/echo?q=[1]{2}|^`\\", "/echo", "q=[1]{2}|^`\\"),
        ("//evil.example/echo", "//evil.example/echo", ""),  # origin-form: not an authority
        ("http://localhost:8000/echo?x=1", "/echo", "x=1"),  # absolute-form (RFC 9112 §3.2.2)
        ("ws://[::1]:8000/chat/x", "/chat/x", ""),
        ("https://example.com", "/", ""),
    ],
)
def test_split_target_returns_path_and_query(target: str, path: str, query: str) -> None:
    assert split_target(target) == (path, query)


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("//[", "'['"),
        ("http://[::1/echo", "Invalid IPv6 URL"),
        ("http://[nothost]/echo", "does not appear to be an IPv4 or IPv6 address"),
        ("http://]/echo", "Invalid IPv6 URL"),
        ("*", "must start with /"),
        ("echo", "must start with /"),
        ("localhost:8000", "must start with /"),
        ("ftp://example.com/echo", "scheme"),
        ("http:///echo", "host"),
        ("/echo#top", "'#'"),
        ("/echo?a#b", "'#'"),
        ("/a%2", "'%'"),
        ("/a%zz", "'%'"),
        ("/a|b", "'|'"),
        ("/caf\xe9", "'\\xe9'"),
    ],
)
def test_split_target_refuses_what_is_not_a_target_with_400(target: str, says: str) -> None:
    with pytest.raises(HandshakeError) as info:
        split_target(target)
    assert info.value.status == 400
    assert "request target" in info.value.reason
    assert says in info.value.reason


def test_split_target_keeps_its_error_short() -> None:
    with pytest.raises(HandshakeError) as info:
        split_target("/" + "x" * 5000 + "[")
    assert len(info.value.reason) < 200


def test_repeated_host_is_refused() -> None:
    data = request_with().replace(b"\r\n\r\n", b"\r\nHost: evil.example.com\r\n\r\n")
    error = handshake_error(data)
    assert error.status == 400
    assert "Host" in error.reason


def test_version_mismatch_advertises_version_13() -> None:
    error = handshake_error(request_with(Sec_WebSocket_Version="8"))
    assert error.headers == (("Sec-WebSocket-Version", "13"),)
    response = parse_response(
        build_error_response(error.status, error.reason, extra_headers=error.headers)
    )
    assert response.status == 426
    assert response.headers["sec-websocket-version"] == "13"


@pytest.mark.parametrize(
    "data",
    [
        b"GET /chat\r\nHost: x\r\n\r\n",
        b"GET /chat HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /chat HTTP/one\r\nHost: x\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
    ],
    ids=[
        "no-version",
        "extra-part",
        "bad-version",
        "no-colon",
        "space-before-colon",
        "obsolete-folding",
        "control-character",
    ],
)
def test_malformed_request_is_400(data: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_request(data)
    assert info.value.status == 400
    assert "malformed" in info.value.reason


def test_build_response_rfc_example() -> None:
    assert build_response(RFC_KEY) == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n"
    )


def test_build_response_extra_headers() -> None:
    data = build_response(RFC_KEY, extra_headers={"Sec-WebSocket-Protocol": "chat"})
    assert data.endswith(b"Sec-WebSocket-Protocol: chat\r\n\r\n")


def test_build_error_response() -> None:
    data = build_error_response(400, "missing Upgrade header")
    head, _, body = data.partition(b"\r\n\r\n")
    response = parse_response(head)
    assert (response.status, response.reason) == (400, "Bad Request")
    assert response.headers == {
        "content-type": "text/plain; charset=utf-8",
        "content-length": str(len(body)),
        "connection": "close",
    }
    assert body == b"missing Upgrade header\n"


def test_error_response_counts_bytes_not_characters() -> None:
    data = build_error_response(599, "naïve")
    assert data.startswith(b"HTTP/1.1 599 \r\n")
    assert b"Content-Length: 7\r\n" in data


# -- Client side -------------------------------------------------------------------


def test_build_request_rfc_example() -> None:
    data, key = build_request(
        "server.example.com", "/chat", key=RFC_KEY, origin="http://example.com"
    )
    assert key == RFC_KEY
    assert data == (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: http://example.com\r\n"
        b"\r\n"
    )


def test_build_request_generates_a_key_and_validates() -> None:
    data, key = build_request("localhost:8765", extra_headers=[("X-Trace", "1"), ("X-Trace", "2")])
    request = parse_request(data)
    assert validate_request(request) == key
    assert request.headers["x-trace"] == "1, 2"


@pytest.mark.parametrize(
    "extra_headers",
    [{"X-Evil": "a\r\nInjected: yes"}, {"Bad Name": "x"}, {"X-Unicode": "€"}],
    ids=["crlf-in-value", "space-in-name", "non-latin-1"],
)
def test_build_request_refuses_invalid_headers(extra_headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="invalid header"):
        build_request("localhost", extra_headers=extra_headers)


@pytest.mark.parametrize("path", ["chat", "/a b", "/x\r\nHost: evil"])
def test_build_request_refuses_invalid_paths(path: str) -> None:
    with pytest.raises(ValueError, match="invalid request path"):
        build_request("localhost", path)


def test_check_response_accepts_the_right_answer() -> None:
    response = check_response(build_response(RFC_KEY), RFC_KEY)
    assert response.status == 101
    assert response.headers["sec-websocket-accept"] == RFC_ACCEPT


def test_check_response_catches_a_wrong_accept() -> None:
    with pytest.raises(HandshakeError) as info:
        check_response(build_response(RFC_KEY), generate_key())
    assert info.value.status == 502
    assert "Sec-WebSocket-Accept" in info.value.reason
    assert RFC_ACCEPT in info.value.reason  # what we got...
    assert info.value.reason.count("'") == 4  # ...and what we expected


def test_check_response_missing_accept() -> None:
    data = build_response(RFC_KEY).replace(b"Sec-WebSocket-Accept", b"X-Accept")
    with pytest.raises(HandshakeError, match="missing Sec-WebSocket-Accept") as info:
        check_response(data, RFC_KEY)
    assert info.value.status == 502


def test_check_response_keeps_a_refusal_status() -> None:
    with pytest.raises(HandshakeError) as info:
        check_response(build_error_response(403, "go away"), RFC_KEY)
    assert info.value.status == 403
    assert "403 Forbidden" in info.value.reason


@pytest.mark.parametrize(
    ("old", "new", "mentions"),
    [
        (b"Upgrade: websocket", b"Upgrade: h2c", "Upgrade"),
        (b"Connection: Upgrade", b"Connection: close", "Connection"),
        (b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", "Extensions"),
    ],
    ids=["upgrade", "connection", "unoffered-extension"],
)
def test_check_response_rejects_invalid_101(old: bytes, new: bytes, mentions: str) -> None:
    with pytest.raises(HandshakeError) as info:
        check_response(build_response(RFC_KEY).replace(old, new), RFC_KEY)
    assert info.value.status == 502
    assert mentions in info.value.reason


def test_malformed_response_is_502() -> None:
    with pytest.raises(HandshakeError) as info:
        parse_response(b"HTTP/1.1 OK\r\n\r\n")
    assert info.value.status == 502


# -- Reading a head ----------------------------------------------------------------


def test_head_reader_byte_by_byte_returns_head_and_rest() -> None:
    data = build_response(RFC_KEY) + b"\x81\x02hi"
    reader = HttpHeadReader()
    results = [reader.feed(data[i : i + 1]) for i in range(len(data))]
    complete = [result for result in results if result is not None]
    assert complete == [(build_response(RFC_KEY), b"")]
    assert results.index(complete[0]) == len(build_response(RFC_KEY)) - 1


def test_head_reader_keeps_bytes_after_the_head() -> None:
    reader = HttpHeadReader()
    assert reader.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r") is None
    assert reader.feed(b"\n\r\n\x81\x02hi") == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"\x81\x02hi",
    )


def test_head_reader_enforces_max_size() -> None:
    head = b"GET / HTTP/1.1\r\nX: " + b"a" * 80 + b"\r\n\r\n"
    assert HttpHeadReader(max_size=len(head)).feed(head) == (head, b"")
    reader = HttpHeadReader(max_size=len(head) - 1)
    with pytest.raises(HandshakeError) as info:
        reader.feed(head)
    assert info.value.status == 431


def test_head_reader_refuses_endless_head_before_its_end() -> None:
    reader = HttpHeadReader(max_size=100)
    assert reader.feed(b"GET / HTTP/1.1\r\n") is None
    with pytest.raises(HandshakeError) as info:
        reader.feed(b"X-Slow: " + b"a" * 100)
    assert info.value.status == 431
