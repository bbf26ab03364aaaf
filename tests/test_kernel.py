"""The runner inside a real Jupyter kernel (nbclient), where an event loop is already running."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

CELLS = {
    "asyncio.run fails": """
import asyncio
main = asyncio.sleep(0)
try:
    asyncio.run(main)
except RuntimeError as error:
    main.close()  # never started: close it, or Python warns it was never awaited
    print(error)
""",
    "start": """
from course_ws import serve_in_background
server = serve_in_background("echo", log_level="info")
print(server.url.startswith("ws://127.0.0.1:"), server.running)
""",
    "blocking client": """
from websockets.sync.client import connect
with connect(server.url + "/echo") as websocket:
    websocket.send("hi")
    print(websocket.recv(timeout=2))
""",
    "top-level await": """
from websockets.asyncio.client import connect as connect_async
async with connect_async(server.url + "/echo") as websocket:
    await websocket.send(b"\\x00\\xff")
    print(await websocket.recv())
""",
    "quiet while the server logs": """
import time
with connect(server.url + "/echo") as websocket:
    websocket.send("x")
    websocket.recv(timeout=2)
time.sleep(0.3)
print("nothing else printed")
""",
    "stop": """
server.stop()
print(server.running, any("connection open" in line for line in server.logs))
""",
}

EXPECTED = {
    "asyncio.run fails": "asyncio.run() cannot be called from a running event loop\n",
    "start": "True True\n",
    "blocking client": "hi\n",
    "top-level await": "b'\\x00\\xff'\n",
    "quiet while the server logs": "nothing else printed\n",
    "stop": "False True\n",
}


def test_runner_works_in_a_kernel_and_keeps_logs_out_of_cells(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source.strip()) for source in CELLS.values()]
    client = NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    for name, cell in zip(CELLS, notebook.cells, strict=True):
        streams = [
            (out["name"], out["text"]) for out in cell.outputs if out["output_type"] == "stream"
        ]
        others = [out for out in cell.outputs if out["output_type"] != "stream"]
        assert not others, f"{name}: unexpected output {others}"
        assert streams == [("stdout", EXPECTED[name])], f"{name}: {streams}"
