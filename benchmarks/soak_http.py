"""Raw HTTP/1.1 exchanges for the soak: any method, any bytes, chunked bodies, sockets dropped mid-request.

An HTTP client library would refuse half of what the soak sends (unknown methods, broken JSON declared as
JSON, bodies over the limit sent chunked) or hide what came back (a reset before the answer). These helpers
write the bytes themselves and read one answer per connection (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

HOST = "127.0.0.1"
_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Reply:
    """What one exchange got: a status (None: no answer), the ``Retry-After`` header, time and error."""

    status: int | None
    retry_after: str | None
    seconds: float
    error: str | None = None
    body: bytes = b""


def head(method: str, path: str, *, content_type: str | None = "application/json", length: int | None = None,
         chunked: bool = False) -> bytes:
    """The request line and headers, ending with the blank line."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


async def _read_reply(reader: asyncio.StreamReader, method: str) -> tuple[int, dict[str, str], bytes]:
    raw_head = await reader.readuntil(b"\r\n\r\n")
    if len(raw_head) > _MAX_HEAD:
        raise ValueError("response head too large")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, headers, bytes(body)
            body += await reader.readexactly(size + 2)
            del body[-2:]
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    return status, headers, await reader.read()


async def exchange(port: int, request_head: bytes, body_parts: Sequence[bytes] = (), *, method: str = "POST",
                   timeout: float = 10.0) -> Reply:
    """Send a request (head, then the body parts) and read the answer, reading while still writing.

    The server may answer (413) and close before the whole body is sent; the answer is read concurrently so
    it is not lost to the reset that follows.

    Args:
        port: the server's port on 127.0.0.1.
        request_head: from :func:`head`.
        body_parts: written one after the other (chunks, or one body).
        method: the request's method (a HEAD answer has no body).
        timeout: seconds for the whole exchange, connection included.
    """
    started = time.perf_counter()

    def reply(status: int | None = None, headers: dict[str, str] | None = None, body: bytes = b"",
              error: str | None = None) -> Reply:
        return Reply(status, (headers or {}).get("retry-after"), time.perf_counter() - started, error, body)

    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except (OSError, TimeoutError) as error:
        return reply(error=f"connect: {type(error).__name__}")
    reading = asyncio.create_task(_read_reply(reader, method))
    try:
        try:
            writer.write(request_head)
            for part in body_parts:
                if reading.done():
                    break
                writer.write(part)
                await writer.drain()
        except OSError:
            pass  # the server closed early; its answer (if any) is read below
        left = max(timeout - (time.perf_counter() - started), 0.0)
        try:
            status, headers, body = await asyncio.wait_for(reading, left)
        except TimeoutError:
            return reply(error="timeout")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as error:
            return reply(error=f"no answer: {type(error).__name__}")
        return reply(status, headers, body)
    finally:
        if not reading.done():
            reading.cancel()
        writer.transport.abort()


async def abandon(port: int, request_head: bytes, body: bytes, *, fraction: float = 1.0, reset: bool = False,
                  timeout: float = 5.0) -> str | None:
    """Send a request (or its first ``fraction``) and drop the connection at once, without reading.

    Args:
        reset: close with a TCP reset (``SO_LINGER`` 0) rather than a FIN.

    Returns:
        None, or what went wrong while connecting or writing.
    """
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except (OSError, TimeoutError) as error:
        return f"connect: {type(error).__name__}"
    try:
        writer.write(request_head + body[: int(len(body) * fraction)])
        await asyncio.wait_for(writer.drain(), timeout)
    except (OSError, TimeoutError) as error:
        return f"write: {type(error).__name__}"
    finally:
        if reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
    return None
