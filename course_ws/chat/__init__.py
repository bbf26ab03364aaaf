"""The chat of the course, independent of any web stack.

:mod:`.protocol` is the JSON protocol (what clients send, what they receive),
:mod:`.history` a room's bounded memory of messages, :mod:`.broker` the place
ids are assigned and messages fan out from (one process, or many through
Redis), :mod:`.rooms` the members connected to *this* process, and
:mod:`.ratelimit` the per-connection token bucket. Each server in
:mod:`course_ws.servers` wires these to its own stack.
"""
