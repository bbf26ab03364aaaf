"""The echo server with a real browser's WebSocket: headless Chromium."""

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
  for (const size of [0, 125, 126, 65536, 1048575]) {
    const text = "é".repeat(Math.floor(size / 2)) + "a".repeat(size % 2);
    ws.send(text);
    results.push((await next()) === text);
    const bytes = new Uint8Array(size).map((_, i) => i % 251);
    ws.send(bytes);
    const back = new Uint8Array(await next());
    results.push(back.length === size && back.every((b, i) => b === i % 251));
  }
  const closed = new Promise((resolve) => { ws.onclose = (event) => resolve(event.code); });
  ws.close(1000, "bye");
  return { results, closeCode: await closed };
}
"""


@pytest.mark.service("chromium")
def test_chromium_round_trips_text_and_binary(browser):
    with serve_in_background("echo") as server:
        page = browser.new_page()
        try:
            outcome = page.evaluate(ROUND_TRIPS, server.url + "/echo")
        finally:
            page.close()
    assert outcome["results"] == [True] * 10
    assert outcome["closeCode"] == 1000
