"""Hosting: starting servers by name, on sockets bound here, in the background of a notebook.

:mod:`.catalogue` names every server, :mod:`.listening` binds listening sockets
with errors that say what to do, :mod:`.background` runs a server in a thread
of its own (``serve_in_background``), :mod:`.logs` keeps its log lines out of
notebook cells, and :mod:`.programs` finds the external programs (redis-server,
nginx, chromium) that later chapters start. Chapter 06 adds :mod:`.workers` (one
port, N worker processes, SIGTERM for 1001 and SIGHUP for a rolling restart),
:mod:`.redis_server` and :mod:`.nginx` (the real programs on free loopback
ports, in folders of their own) and :mod:`.deploy` (Redis, workers and nginx,
started and stopped together: ``course-ws deploy local``).
"""
