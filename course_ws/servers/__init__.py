"""The example servers of the course, one module per stack.

Each module exposes ``start(options, sock) -> RunningServer``; the catalogue
(:mod:`course_ws.catalogue`) names them, and the runner and the CLI start them.
"""
