"""The raw server with a real browser's WebSocket: headless Chromium.

Chromium offers ``permessage-deflate`` in every handshake; the raw server
declines by not mentioning it, so this also proves the browser is happy with a
plain, uncompressed connection, and that our frames (2-, 4- and 10-byte
headers, unmasked) are what a browser expects from a server.
"""

from __future__ import annotations

import pytest

from course_ws import serve_in_background

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


@pytest.mark.service("chromium")
def test_chromium_round_trips_text_and_binary(browser):
    with serve_in_background("raw") as server:
        page = browser.new_page()
        try:
            outcome = page.evaluate(ROUND_TRIPS, server.url + "/echo")
        finally:
            page.close()
    assert outcome["results"] == [True] * 12
    assert outcome["extensions"] == "", "no compression was negotiated"
    assert outcome["closed"] == {"code": 4000, "wasClean": True}


@pytest.mark.service("chromium")
def test_chromium_is_told_1001_when_the_server_stops(browser):
    server = serve_in_background("raw")
    page = browser.new_page()
    try:
        assert page.evaluate(GOING_AWAY, server.url + "/echo")
        server.stop()
        closed = page.evaluate("() => window.goingAway")
    finally:
        page.close()
        server.stop()
    assert closed == {"code": 1001, "reason": "server shutting down"}
