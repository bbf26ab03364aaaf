"""Exercise 01 · accept_key — prove you speak WebSocket.

A client opens a WebSocket with an HTTP request carrying a random
``Sec-WebSocket-Key``. The server proves it understood by answering
``Sec-WebSocket-Accept``, computed from that key (RFC 6455 §1.3 and §4.2.2):

1. append the fixed GUID below to the key — as *text*: don't base64-decode the key;
2. hash the result (its UTF-8 bytes) with SHA-1, which gives 20 raw bytes;
3. encode those 20 bytes in base64, and return them as a ``str``.

The RFC's example: the key ``dGhlIHNhbXBsZSBub25jZQ==`` gives
``s3pPLMBiTxaQ9kYGzzhZRbK+xOo=``.

Tip: :mod:`hashlib` (``hashlib.sha1(data).digest()``) and :mod:`base64`
(``base64.b64encode(raw)`` returns ``bytes``; ``.decode()`` makes it a ``str``).

Check your work with ``course_ws.check("accept_key")`` in a notebook, or
``course-ws check accept_key`` in a terminal.
"""

import base64  # noqa: F401  (you will need it)
import hashlib  # noqa: F401  (you will need it)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value that answers ``key``."""
    # TODO 1: glue GUID to the end of the key.
    text = key
    # TODO 2: SHA-1 of the UTF-8 bytes of `text`: 20 raw bytes.
    digest = text.encode()
    # TODO 3: base64 of the digest, as a str.
    return digest.decode()
