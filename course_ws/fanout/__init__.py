"""Fan-out: sending one event to many WebSockets, and what a slow reader costs.

:mod:`.strategies` holds the strategies chapter 03 compares; :mod:`.bounded`
the bounded ones the servers ship: non-blocking writes with a cap per member
where the stack has them (``websockets``), and a bounded per-member outbox
where the stack has only ``await send`` (ASGI, Channels).
"""
