"""A real HTTP/1.1 server on loopback that answers from a handler and plays scripted faults.

``LoopbackServer(handler)`` serves ``handler`` (a callable ``httpx.Request -> httpx.Response``,
e.g. a :class:`~bastion_balance.testing.Simulator`) on ``127.0.0.1`` at an ephemeral port, from
its own event loop in a daemon thread. It is built on ``asyncio`` streams only (docs/decisions.md §16).
``script(...)`` queues :class:`Fault` s: each one replaces the normal answer to the next request
(a delay, a reset, a status, an odd body, a slow drip, a trickled head, a silent close), then normal handling
resumes. Every request received is recorded for assertions.

>>> sim = Simulator(SimulatedKraken(host="127.0.0.1"))                  # doctest: +SKIP
>>> with LoopbackServer(sim) as server:                                  # doctest: +SKIP
...     server.script(Fault.reset(), Fault.status(503))
...     kraken = Kraken(api_key=..., api_secret=..., base_url=server.url)
...     bb.fetch_balance(kraken).total                                   # third try answers
Decimal('382.2032')
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http
import itertools
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, Literal, NamedTuple, Self

import attrs
import httpx

__all__ = ["Fault", "LoopbackServer", "RecordedRequest"]

Handler = Callable[[httpx.Request], httpx.Response]
FaultKind = Literal["delay", "reset", "status", "body", "drip", "trickle_head", "close"]

_HEAD_LIMIT: Final = 64 * 1024  # request line + headers
_BACKLOG: Final = 1024  # hundreds of clients connecting at once (load and scale tests)
_START_TIMEOUT: Final = 10.0
_STOP_TIMEOUT: Final = 10.0
_HOP_BY_HOP: Final = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class _BadRequestError(Exception):
    """The bytes received are not an HTTP/1.1 request we understand."""


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted misbehaviour, applied to one request instead of the normal answer.

    Build them with the class methods; ``LoopbackServer.script(*faults)`` queues them.
    """

    kind: FaultKind
    seconds: float = 0.0
    status_code: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes = b""
    chunks: tuple[bytes, ...] | int = ()
    from_handler: bool = False

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` after the request arrives, then answer normally."""
        return cls(kind="delay", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Read the request, then reset the connection (TCP RST, no answer)."""
        return cls(kind="reset")

    @classmethod
    def close_before_response(cls) -> Fault:
        """Read the request, then close the connection cleanly without answering."""
        return cls(kind="close")

    @classmethod
    def status(
        cls, status_code: int, *, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> Fault:
        """Answer with this status, headers and body instead of asking the handler."""
        return cls(kind="status", status_code=status_code, headers=_pairs(headers), content=body)

    @classmethod
    def body(cls, data: bytes, *, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Fault:
        """Answer with ``data`` as the body (HTTP 200 unless told otherwise)."""
        return cls(kind="body", status_code=status_code, headers=_pairs(headers), content=data)

    @classmethod
    def drip(cls, chunks: Sequence[bytes] | int, pause: float) -> Fault:
        """Send the body piece by piece, ``pause`` seconds apart.

        ``chunks`` is either the pieces of a 200 body to send, or a number: the handler's own
        answer cut into that many pieces. ``Content-Length`` is announced up front.
        """
        pieces = chunks if isinstance(chunks, int) else tuple(chunks)
        if isinstance(pieces, int) and pieces < 1:
            msg = f"drip needs at least one chunk, got {pieces}"
            raise ValueError(msg)
        return cls(kind="drip", seconds=pause, chunks=pieces)

    @classmethod
    def trickle_head(
        cls,
        pause: float,
        *,
        body: bytes | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Send the status line and headers one byte at a time, ``pause`` seconds apart.

        The body follows at once. Without ``body`` it is the handler's own answer (status,
        headers and body); with it, ``status_code``, ``headers`` and ``body`` are sent.
        """
        return cls(
            kind="trickle_head",
            seconds=pause,
            status_code=status_code,
            headers=_pairs(headers),
            content=body or b"",
            from_handler=body is None,
        )


def _pairs(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((headers or {}).items())


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request as the server received it; ``arrived`` is ``time.monotonic()`` seconds."""

    method: str
    path: str
    headers: httpx.Headers = attrs.field(eq=False)
    body: bytes
    arrived: float
    connection: int
    fault: Fault | None


class _Parsed(NamedTuple):
    method: str
    target: str
    version: str
    headers: httpx.Headers
    body: bytes


@attrs.frozen
class _Answer:
    status_code: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class LoopbackServer:
    """An HTTP/1.1 server on ``127.0.0.1`` serving ``handler``, with scripted faults.

    ``host`` overrides the host of the URL the handler sees (by default the request's ``Host``
    header), so a simulator that routes by host name can be served as is. Use it as a context
    manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, handler: Handler, *, host: str | None = None) -> None:
        self._handler = handler
        self._host = host
        self._lock = threading.Lock()
        self._script: deque[Fault] = deque()
        self._requests: list[RecordedRequest] = []
        self._connections = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None
        self.errors: list[Exception] = []

    # -- control (any thread) --------------------------------------------------------------

    def start(self) -> Self:
        """Bind an ephemeral port and serve in a daemon thread; returns ``self``."""
        if self._thread is not None:
            msg = "the loopback server is already started"
            raise RuntimeError(msg)
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(ready),), name="bastion-loopback", daemon=True
        )
        self._thread.start()
        try:
            self._port = ready.result(timeout=_START_TIMEOUT)
        except BaseException:
            self._thread.join(_STOP_TIMEOUT)
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Stop serving: open connections are cut and pending answers abandoned."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(stopping.set)
        thread.join(_STOP_TIMEOUT)
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._port is None:
            msg = "the loopback server is not started"
            raise RuntimeError(msg)
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, a base URL for a provider."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, *faults: Fault) -> None:
        """Apply these faults to the next requests, one each, in order."""
        for fault in faults:
            if not isinstance(fault, Fault):
                msg = f"script() takes Fault objects, got {fault!r}"
                raise TypeError(msg)
        with self._lock:
            self._script.extend(faults)

    @property
    def pending(self) -> int:
        """How many scripted faults are still waiting for a request."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    # -- the server thread -----------------------------------------------------------------

    async def _main(self, ready: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        connections: set[asyncio.Task[None]] = set()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None  # noqa: S101  # always inside a task here
            connections.add(task)
            try:
                await self._serve(reader, writer, next(self._connections))
                writer.close()
                await writer.wait_closed()
            except ConnectionError:
                pass  # the client went away mid-answer (it gave up, or hit its size cap)
            except asyncio.CancelledError:
                pass  # stop() cancels us; ending quietly keeps asyncio's stream callback silent
            finally:
                connections.discard(task)
                writer.transport.abort()  # cuts the connection when the server stops

        try:
            server = await asyncio.start_server(serve, "127.0.0.1", 0, limit=_HEAD_LIMIT, backlog=_BACKLOG)
        except BaseException as exc:  # noqa: BLE001  # handed to start()
            ready.set_exception(exc)
            return
        ready.set_result(server.sockets[0].getsockname()[1])
        async with server:
            await self._stopping.wait()
            server.close()
            for task in list(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int) -> None:
        """Answer requests on one connection until either side closes it."""
        keep_alive = True
        while keep_alive:
            try:
                parsed = await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the client closed the connection (normal between keep-alive requests)
            except (_BadRequestError, asyncio.LimitOverrunError, ValueError):
                writer.write(_encode(_Answer(400, (), b"bad request"), head_only=False, close=True))
                await writer.drain()
                return
            keep_alive = _keeps_alive(parsed.version, parsed.headers)
            with self._lock:
                fault = self._script.popleft() if self._script else None
                self._requests.append(
                    RecordedRequest(
                        method=parsed.method,
                        path=parsed.target,
                        headers=parsed.headers,
                        body=parsed.body,
                        arrived=time.monotonic(),
                        connection=conn,
                        fault=fault,
                    )
                )
            if fault is None or fault.kind == "delay":
                if fault is not None:
                    await asyncio.sleep(fault.seconds)
                answer = await self._answer(parsed)
            elif fault.kind == "reset":
                _reset(writer)
                return
            elif fault.kind == "close":
                return
            elif fault.kind == "drip":
                await self._drip(fault, writer, parsed, keep_alive=keep_alive)
                continue
            elif fault.kind == "trickle_head":
                await self._trickle_head(fault, writer, parsed, keep_alive=keep_alive)
                continue
            else:  # "status" or "body"
                answer = _Answer(fault.status_code, fault.headers, fault.content)
            writer.write(_encode(answer, head_only=parsed.method == "HEAD", close=not keep_alive))
            await writer.drain()

    async def _answer(self, parsed: _Parsed) -> _Answer:
        """The handler's answer, computed off the event loop; a handler failure is a 500."""
        host = self._host or parsed.headers.get("host") or f"127.0.0.1:{self.port}"
        url = f"http://{host}{parsed.target}"
        request = httpx.Request(parsed.method, url, headers=parsed.headers, content=parsed.body)
        try:
            response = await asyncio.to_thread(self._handler, request)
            raw = await asyncio.to_thread(_raw_body, response)
        except Exception as exc:  # noqa: BLE001  # a broken handler must not kill the server
            with self._lock:
                self.errors.append(exc)
            text = f"loopback handler failed: {type(exc).__name__}".encode()
            return _Answer(500, (("Content-Type", "text/plain"),), text)
        return _Answer(response.status_code, tuple(response.headers.multi_items()), raw)

    async def _drip(
        self,
        fault: Fault,
        writer: asyncio.StreamWriter,
        parsed: _Parsed,
        *,
        keep_alive: bool,
    ) -> None:
        if isinstance(fault.chunks, int):
            answer = await self._answer(parsed)
            pieces = _split(answer.body, fault.chunks)
        else:
            pieces = list(fault.chunks)
            answer = _Answer(200, (), b"".join(pieces))
        writer.write(_encode(answer, head_only=True, close=not keep_alive))
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(fault.seconds)
            writer.write(piece)
            await writer.drain()

    async def _trickle_head(
        self,
        fault: Fault,
        writer: asyncio.StreamWriter,
        parsed: _Parsed,
        *,
        keep_alive: bool,
    ) -> None:
        if fault.from_handler:
            answer = await self._answer(parsed)
        else:
            answer = _Answer(fault.status_code, fault.headers, fault.content)
        head = _encode(answer, head_only=True, close=not keep_alive)
        for index in range(len(head)):
            if index:
                await asyncio.sleep(fault.seconds)
            writer.write(head[index : index + 1])
            await writer.drain()
        if parsed.method != "HEAD":
            writer.write(answer.body)
            await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> _Parsed:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        msg = f"bad request line {lines[0]!r}"
        raise _BadRequestError(msg)
    method, target, version = parts
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            msg = f"bad header line {line!r}"
            raise _BadRequestError(msg)
        pairs.append((name.strip(), value.strip()))
    headers = httpx.Headers(pairs)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return _Parsed(method, target, version, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers end with an empty line
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _keeps_alive(version: str, headers: httpx.Headers) -> bool:
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _encode(answer: _Answer, *, head_only: bool, close: bool) -> bytes:
    """Status line, headers (with our own Content-Length) and, unless ``head_only``, body."""
    try:
        reason = http.HTTPStatus(answer.status_code).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {answer.status_code} {reason}"]
    lines += [f"{k}: {v}" for k, v in answer.headers if k.lower() not in _HOP_BY_HOP]
    lines.append(f"Content-Length: {len(answer.body)}")
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + answer.body


def _raw_body(response: httpx.Response) -> bytes:
    """The body as it goes on the wire (still encoded when ``Content-Encoding`` says so)."""
    if isinstance(response.stream, httpx.ByteStream):
        return b"".join(response.stream)
    return b"".join(response.iter_raw())


def _split(data: bytes, count: int) -> list[bytes]:
    size = max(1, -(-len(data) // count))
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer gets a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
