"""Every server's ``/echo`` with a real browser's WebSocket: headless Chromium.

Chromium offers ``permessage-deflate`` in every handshake. ``echo`` accepts it;
``raw`` and ``chat`` decline by not mentioning it, which also proves the browser
is happy with a plain connection, and, for ``raw``, that our own frames (2-, 4-
and 10-byte headers, unmasked) are what a browser expects from a server.
"""

from __future__ import annotations

import pytest

from course_ws import serve_in_background
from course_ws.hosting.catalogue import CATALOGUE

ECHOING = [name for name, entry in CATALOGUE.items() if "/echo" in entry.endpoints]
COMPRESSED = {"echo"}

ROUND_TRIPS = """
async (url) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const replies = [];
  ws.onmessage = (event) => replies.push(event.data);
  const next = () => new Promise((resolve) => {
    const poll = () => replies.length ? resolve(replies.shift()) : setTimeout(poll, 5);
    poll();
  });
  const results = [];
  for (const size of [0, 125, 126, 65535, 65536, 1048575]) {
    const text = "é".repeat(Math.floor(size / 2)) + "a".repeat(size % 2);
    ws.send(text);
    results.push((await next()) === text);
    const bytes = new Uint8Array(size).map((_, i) => i % 251);
    ws.send(bytes);
    const back = new Uint8Array(await next());
    results.push(back.length === size && back.every((b, i) => b === i % 251));
  }
  const closed = new Promise((resolve) => {
    ws.onclose = (event) => resolve({ code: event.code, wasClean: event.wasClean });
  });
  ws.close(4000, "bye");
  return { results, extensions: ws.extensions, closed: await closed };
}
"""

GOING_AWAY = """
async (url) => {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  window.goingAway = new Promise((resolve) => {
    ws.onclose = (event) => resolve({ code: event.code, reason: event.reason });
  });
  return true;
}
"""


def same_origin_page(browser, server):
    """A page of the server's own origin, as a real page would be: the ``channels``
    server refuses other origins (``null`` for a blank page) as browsers' CSRF defence."""
    page = browser.new_page()
    page.goto(server.http_url + "/healthz")
    return page


@pytest.mark.service("chromium")
@pytest.mark.parametrize("name", ECHOING)
def test_chromium_round_trips_text_and_binary(browser, name):
    with serve_in_background(name) as server:
        page = same_origin_page(browser, server)
        try:
            outcome = page.evaluate(ROUND_TRIPS, server.url + "/echo")
        finally:
            page.close()
    assert outcome["results"] == [True] * 12
    if name in COMPRESSED:
        assert outcome["extensions"].startswith("permessage-deflate")
    else:
        assert outcome["extensions"] == "", "no compression was negotiated"
    assert outcome["closed"] == {"code": 4000, "wasClean": True}


@pytest.mark.service("chromium")
@pytest.mark.parametrize("name", ECHOING)
def test_chromium_is_told_1001_when_the_server_stops(browser, name):
    server = serve_in_background(name)
    page = same_origin_page(browser, server)
    try:
        assert page.evaluate(GOING_AWAY, server.url + "/echo")
        server.stop()
        closed = page.evaluate("() => window.goingAway")
    finally:
        page.close()
        server.stop()
    assert closed["code"] == 1001
