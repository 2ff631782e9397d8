"""Transport helpers for the drivers: bounded body decoding and a sync deadline per socket call.

Two independent pieces, both pure helpers that ``_client`` calls:

* :class:`BodyDecoder` turns the raw bytes of a response (``response.iter_raw()`` /
  ``aiter_raw()``) into its body under a size cap, whatever ``Content-Encoding`` says. Every
  decompression step is asked for at most the room left under the cap plus one byte, so a
  compression bomb is refused after producing about ``cap`` bytes instead of whole chunks of
  gigabytes. Stacked encodings (``gzip, gzip``) and unknown ones are refused outright.
* :class:`DeadlineBackend` is an httpcore network backend whose every connect, read, write and
  TLS handshake waits at most until the deadline set for the current thread with
  :func:`deadline_scope`, so a status line, headers or a body trickling in byte by byte cannot
  outlast it. :func:`sync_transport` builds an ``httpx.HTTPTransport`` that uses it; httpx's
  exception mapping is kept, so callers see ``httpx.ReadTimeout`` and friends. The async driver
  does not need it: ``asyncio.timeout`` already bounds everything there.

The deadline lives in a :class:`contextvars.ContextVar`, which is per thread (a new thread
starts with none set): a worker thread of the sync ``aggregate`` sets its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, Final, Protocol

import httpx

from .exceptions import DeadlineExceededError, ResponseTooLargeError, UnexpectedResponseError

#: Names of the deadline-bound network layer, which needs httpcore: loaded on first use, like
#: httpx loads httpcore only when its first transport is made (``import bastion_balance`` stays cheap).
_DEADLINE_NET: Final = frozenset({"DeadlineBackend", "DeadlineStream", "DeadlineTransport", "sync_transport"})

__all__ = [
    "AsyncShardedTransport",
    "BodyDecoder",
    "ShardedTransport",
    "accept_encoding",
    "aread_body",
    "current_deadline",
    "deadline_scope",
    "finished_response",
    "read_body",
    "shard_limits",
    "sharded_async_transport",
    "sharded_sync_transport",
    "supported_encodings",
]


_ENCODING_HEADERS: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_BROTLI_STEP: Final = 32 * 1024  # brotli's buffer stops growing at the first block past its limit
_ZSTD_BLOCK: Final = 128 * 1024  # a zstd block never decodes to more; it costs at least 4 bytes
_ZSTD_MIN_SLICE: Final = 8


# -- bounded decoding ------------------------------------------------------------------------


class _Sink(Protocol):
    def _room(self) -> int: ...

    def _take(self, piece: bytes) -> bool: ...


class _Engine(Protocol):
    name: str
    errors: tuple[type[Exception], ...]

    def feed(self, data: bytes, sink: _Sink) -> None: ...

    def complete(self) -> bool: ...


class _TrailingDataError(Exception):
    """Bytes arrived after the end of a compressed stream that cannot have more."""


class _Zlib:
    """gzip (concatenated members allowed) or deflate (zlib-wrapped or raw, sniffed)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: tuple[type[Exception], ...] = (zlib.error, _TrailingDataError)
        self._gzip = name == "gzip"
        self._head = b""  # deflate: the first bytes, until the wrapper can be told
        self._z: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if self._gzip else None

    def _sniffed(self, data: bytes) -> bytes:
        """For deflate, wait for two bytes and pick zlib-wrapped or raw (as httpx accepts both)."""
        self._head += data
        if len(self._head) < 2:
            return b""
        cmf, flg = self._head[0], self._head[1]
        wrapped = cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0
        self._z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        data, self._head = self._head, b""
        return data

    def feed(self, data: bytes, sink: _Sink) -> None:
        if self._z is None:
            data = self._sniffed(data)
        while data:
            if self._z.eof:
                if not self._gzip:
                    raise _TrailingDataError
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next gzip member
            if not sink._take(self._z.decompress(data, sink._room() + 1)):
                return
            data = self._z.unused_data if self._z.eof else self._z.unconsumed_tail

    def complete(self) -> bool:
        return self._z is not None and bool(self._z.eof)


class _Brotli:
    """br, with the output limit of brotli / brotlicffi >= 1.2 (older ones are refused)."""

    name = "br"

    def __init__(self, module: ModuleType) -> None:
        self.errors: tuple[type[Exception], ...] = (module.error, _TrailingDataError)
        self._d: Any = module.Decompressor()

    def feed(self, data: bytes, sink: _Sink) -> None:
        if not data:
            return
        if self._d.is_finished():
            raise _TrailingDataError
        if not sink._take(self._d.process(data, output_buffer_limit=min(sink._room() + 1, _BROTLI_STEP))):
            return
        while not self._d.can_accept_more_data():
            piece = self._d.process(b"", output_buffer_limit=min(sink._room() + 1, _BROTLI_STEP))
            if not piece:
                raise _TrailingDataError  # no progress: the stream is broken, never loop on it
            if not sink._take(piece):
                return

    def complete(self) -> bool:
        return bool(self._d.is_finished())


class _Zstd:
    """zstd through ``zstandard``, whose decompressor has no output limit.

    A zstd block decodes to at most 128 KiB and costs at least 4 bytes, so input is fed in slices
    of about ``4 * room / 128 KiB`` bytes (at least 8): one step yields at most the room left
    plus a few blocks.
    """

    name = "zstd"

    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self.errors: tuple[type[Exception], ...] = (module.ZstdError, _TrailingDataError)
        self._d: Any = module.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes, sink: _Sink) -> None:
        pos = 0
        while pos < len(data):
            if self._d.eof:  # the next frame
                self._d = self._module.ZstdDecompressor().decompressobj()
            size = max(_ZSTD_MIN_SLICE, 4 * (sink._room() // _ZSTD_BLOCK))
            piece = data[pos : pos + size]
            if not sink._take(self._d.decompress(piece)):
                return
            pos += len(piece)
            if self._d.eof:  # a frame ended inside the slice: its rest starts the next one
                pos -= len(self._d.unused_data)

    def complete(self) -> bool:
        return bool(self._d.eof)


def _bounded_module(names: Iterable[str], probe: Callable[[ModuleType], bool]) -> ModuleType | None:
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if probe(module):
            return module
    return None


@functools.cache
def _brotli() -> ModuleType | None:
    return _bounded_module(
        ("brotli", "brotlicffi"), lambda m: hasattr(getattr(m, "Decompressor", None), "can_accept_more_data")
    )


@functools.cache
def _zstandard() -> ModuleType | None:
    return _bounded_module(("zstandard",), lambda m: hasattr(m, "ZstdDecompressor"))


def supported_encodings() -> tuple[str, ...]:
    """The content codings :class:`BodyDecoder` accepts here, in order of preference.

    ``gzip`` and ``deflate`` always; ``br`` when brotli or brotlicffi 1.2 or later (the first
    with an output limit) is importable; ``zstd`` when zstandard is.
    """
    names = ["gzip", "deflate"]
    if _brotli() is not None:
        names.append("br")
    if _zstandard() is not None:
        names.append("zstd")
    return tuple(names)


def accept_encoding() -> str:
    """An ``Accept-Encoding`` value naming exactly what :class:`BodyDecoder` decodes.

    httpx's default header offers ``br`` / ``zstd`` whenever a module is installed, even one
    too old to be bounded here; send this instead so a venue never picks one we refuse.
    """
    return ", ".join(supported_encodings())


def _engine(name: str) -> _Engine | None:
    if name in {"gzip", "x-gzip"}:
        return _Zlib("gzip")
    if name == "deflate":
        return _Zlib("deflate")
    if name == "br" and (brotli := _brotli()) is not None:
        return _Brotli(brotli)
    if name == "zstd" and (zstandard := _zstandard()) is not None:
        return _Zstd(zstandard)
    return None


class BodyDecoder:
    """Decodes one response body from its raw bytes, refusing anything past ``cap`` bytes.

    ``content_encoding`` is the response's ``Content-Encoding`` header (``None`` or
    ``identity`` for none; several header lines arrive joined by commas). ``feed()`` each raw
    chunk in order, then ``finish()`` for the body. At most about ``cap`` decoded bytes are ever
    held: each step of the decompressor is limited to the room left plus one byte (brotli and
    zstd may overshoot by a few tens or hundreds of KiB, never by a chunk's worth of expansion).

    Raises :class:`~bastion_balance.exceptions.ResponseTooLargeError` as soon as the decoded body,
    or the raw stream, passes ``cap``; :class:`~bastion_balance.exceptions.UnexpectedResponseError`
    when constructed for stacked (``gzip, gzip``) or unknown codings, and on corrupt or truncated
    compressed data. ``label`` prefixes messages (the provider's label), ``venue`` is set on them.
    """

    def __init__(
        self, content_encoding: str | None, cap: int, *, venue: str | None = None, label: str | None = None
    ) -> None:
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            msg = f"cap must be a non-negative int, got {cap!r}"
            raise ValueError(msg)
        self._cap = cap
        self._venue = venue
        self._prefix = f"{label}: " if label else ""
        self._out = bytearray()
        self._raw = 0
        self._over = False
        self._finished = False
        self._engine = self._pick(content_encoding)
        self._encoding = "identity" if self._engine is None else self._engine.name

    @property
    def encoding(self) -> str:
        """The coding being undone: ``identity``, ``gzip``, ``deflate``, ``br`` or ``zstd``."""
        return self._encoding

    @property
    def raw_bytes(self) -> int:
        """How many raw (still encoded) bytes were fed so far."""
        return self._raw

    @property
    def decoded_bytes(self) -> int:
        """How many decoded bytes are held so far."""
        return len(self._out)

    def _pick(self, header: str | None) -> _Engine | None:
        tokens = [token.strip().lower() for token in (header or "").split(",")]
        codings = [token for token in tokens if token and token != "identity"]
        if len(codings) > 1:
            raise UnexpectedResponseError(
                f"{self._prefix}the answer stacks several content codings ({', '.join(codings)}, "
                f"from Content-Encoding {header!r}); only one is accepted",
                venue=self._venue,
            )
        if not codings:
            return None
        engine = _engine(codings[0])
        if engine is None:
            raise UnexpectedResponseError(
                f"{self._prefix}the answer's content coding {codings[0]!r} is not supported "
                f"(accepted: identity, {accept_encoding()})",
                venue=self._venue,
            )
        return engine

    # the sink the engines write into (not for callers)
    def _room(self) -> int:
        return self._cap - len(self._out)

    def _take(self, piece: bytes) -> bool:
        """Keep ``piece``; False (and nothing kept) when it would pass the cap."""
        if len(self._out) + len(piece) > self._cap:
            self._over = True
            return False
        self._out += piece
        return True

    def _too_large(self) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"{self._prefix}response body is larger than {self._cap} bytes", venue=self._venue
        )

    def _corrupt(self) -> UnexpectedResponseError:
        return UnexpectedResponseError(
            f"{self._prefix}the answer's {self._encoding} data is corrupt or truncated", venue=self._venue
        )

    def feed(self, chunk: bytes) -> None:
        """Take the next raw chunk of the body."""
        if self._finished:
            msg = "feed() after finish() or after an error"
            raise RuntimeError(msg)
        failure: Exception | None = None
        self._raw += len(chunk)
        if self._raw > self._cap:
            self._over = True
        elif self._engine is None:
            self._take(chunk)
        else:
            try:
                self._engine.feed(chunk, self)
            except self._engine.errors as exc:
                failure = exc.with_traceback(None)  # its frames hold the raw bytes
        # Raised here, with no bytes of the answer in any local or attribute: an error tracker
        # that records locals must not record a token the venue sent.
        del chunk
        if failure is not None or self._over:
            self._failed()
        if failure is not None:
            raise self._corrupt() from failure
        if self._over:
            raise self._too_large()

    def _failed(self) -> None:
        self._finished = True
        self._out = bytearray()
        self._engine = None  # its buffered bytes go with it; the name stays in ``_encoding``

    def finish(self) -> bytes:
        """The decoded body; raises if the compressed stream stopped before its end."""
        if self._finished:
            msg = "finish() after finish() or after an error"
            raise RuntimeError(msg)
        engine = self._engine
        if engine is not None and self._raw and not engine.complete():
            self._failed()
            raise self._corrupt()
        self._finished = True
        body, self._out = bytes(self._out), bytearray()
        return body


def _decoder_for(
    response: httpx.Response, cap: int, venue: str | None, label: str | None
) -> tuple[BodyDecoder, bool]:
    """The decoder of this response, and whether its raw bytes are still to be read.

    A body already in memory (an in-process transport such as ``httpx.MockTransport``) was
    decoded by httpx: only its size is checked.
    """
    in_memory = response.is_stream_consumed
    encoding = None if in_memory else response.headers.get("content-encoding")
    decoder = BodyDecoder(encoding, cap, venue=venue, label=label)
    if in_memory:
        decoder.feed(response.content)
    return decoder, not in_memory


def read_body(
    response: httpx.Response,
    cap: int,
    *,
    venue: str | None = None,
    label: str | None = None,
    deadline: float | None = None,
) -> bytes:
    """The decoded body of a streamed sync response (``send(..., stream=True)``), capped.

    Reads ``iter_raw()``; closing the response stays the caller's job. ``deadline``
    (``time.monotonic()``) is checked between chunks, for pools without :class:`DeadlineBackend`
    (a caller's own httpx client): past it, ``DeadlineExceededError``.
    """
    decoder, streaming = _decoder_for(response, cap, venue, label)
    if streaming:
        chunk = b""
        try:
            for chunk in response.iter_raw():
                decoder.feed(chunk)
                if deadline is not None and time.monotonic() >= deadline:
                    where = f"{response.request.url.host}{response.request.url.path}"
                    prefix = f"{label}: " if label else ""
                    msg = f"{prefix}deadline passed while reading the answer ({where})"
                    raise DeadlineExceededError(msg, venue=venue)
        finally:
            del chunk  # out of the locals an error tracker records
    return decoder.finish()


async def aread_body(
    response: httpx.Response, cap: int, *, venue: str | None = None, label: str | None = None
) -> bytes:
    """:func:`read_body` for a streamed async response (reads ``aiter_raw()``; the async
    driver's deadline is its ``asyncio.timeout``)."""
    decoder, streaming = _decoder_for(response, cap, venue, label)
    if streaming:
        chunk = b""
        try:
            async for chunk in response.aiter_raw():
                decoder.feed(chunk)
        finally:
            del chunk  # out of the locals an error tracker records
    return decoder.finish()


def finished_response(response: httpx.Response, body: bytes) -> httpx.Response:
    """A read response: the decoded body, without the headers that described the encoding."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _ENCODING_HEADERS]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
    )


# -- the sync deadline -----------------------------------------------------------------------

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "bastion_balance_deadline", default=None
)


def current_deadline() -> float | None:
    """The ``time.monotonic()`` deadline set for this thread by :func:`deadline_scope`, if any."""
    return _deadline.get()


@contextlib.contextmanager
def deadline_scope(deadline: float) -> Iterator[None]:
    """Bound every socket call of :class:`DeadlineBackend` in this thread by ``deadline``.

    ``deadline`` is a ``time.monotonic()`` instant. A nested scope can only shorten it: the
    earlier of the two holds inside. The previous deadline (or none) is restored on exit.
    """
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


# -- sharded connection pools ----------------------------------------------------------------
#
# httpcore's pool looks at every connection for every queued request each time a request
# arrives or a response closes: with 100 connections and 100 requests in flight that is ~10,000
# checks per event, and it dominates the CPU of 1,000 fetches (measured: 3 million `is_idle`
# calls for 300 requests). Several small pools, each request sent to the least busy one, cut
# that by the square of the number of shards while the total number of connections stays the
# same. A caller's own httpx client is used as it is.
SHARD_CONNECTIONS: Final = 10  # connections per shard


def shard_limits(size: int) -> list[httpx.Limits]:
    """``size`` connections split into pools of at most :data:`SHARD_CONNECTIONS`."""
    count = max(1, -(-size // SHARD_CONNECTIONS))
    base, extra = divmod(size, count)
    sizes = [base + (1 if n < extra else 0) for n in range(count)]
    return [httpx.Limits(max_connections=s, max_keepalive_connections=s) for s in sizes]


class _Load:
    """In-flight requests per shard (a response counts until its stream is closed)."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._busy = [0] * count

    def take(self) -> int:
        with self._lock:
            index = min(range(len(self._busy)), key=self._busy.__getitem__)
            self._busy[index] += 1
            return index

    def give(self, index: int) -> None:
        with self._lock:
            self._busy[index] -= 1

    def busy(self) -> list[int]:
        with self._lock:
            return list(self._busy)


class _CountedStream(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, done: Callable[[], None]) -> None:
        self._stream, self._done, self._open = stream, done, True

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            if self._open:
                self._open = False
                self._done()


class _AsyncCountedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, done: Callable[[], None]) -> None:
        self._stream, self._done, self._open = stream, done, True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._open:
                self._open = False
                self._done()


class ShardedTransport(httpx.BaseTransport):
    """Sends each request through the least busy of several sync transports."""

    def __init__(self, shards: list[httpx.BaseTransport]) -> None:
        self.shards = shards
        self.load = _Load(len(shards))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        index = self.load.take()
        try:
            response = self.shards[index].handle_request(request)
        except BaseException:
            self.load.give(index)
            raise
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)  # noqa: S101  # a sync transport's answer
        response.stream = _CountedStream(stream, functools.partial(self.load.give, index))
        return response

    def close(self) -> None:
        for shard in self.shards:
            shard.close()


class AsyncShardedTransport(httpx.AsyncBaseTransport):
    """Sends each request through the least busy of several async transports."""

    def __init__(self, shards: list[httpx.AsyncBaseTransport]) -> None:
        self.shards = shards
        self.load = _Load(len(shards))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = self.load.take()
        try:
            response = await self.shards[index].handle_async_request(request)
        except BaseException:
            self.load.give(index)
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # noqa: S101  # an async transport's answer
        response.stream = _AsyncCountedStream(stream, functools.partial(self.load.give, index))
        return response

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()


def sharded_sync_transport(size: int) -> ShardedTransport:
    """``size`` connections in deadline-bounded sync pools of at most ten each, sharing one TLS
    context (loading the CA bundle is the slow part of making a pool)."""
    from ._deadline_net import sync_transport  # noqa: PLC0415  # httpcore loads with the first pool

    context = httpx.create_ssl_context()
    return ShardedTransport([sync_transport(limits=limits, verify=context) for limits in shard_limits(size)])


def sharded_async_transport(size: int) -> AsyncShardedTransport:
    """``size`` connections in async pools of at most ten each, sharing one TLS context."""
    context = httpx.create_ssl_context()
    return AsyncShardedTransport(
        [httpx.AsyncHTTPTransport(limits=limits, verify=context) for limits in shard_limits(size)]
    )


def __getattr__(name: str) -> Any:  # noqa: ANN401  # a class or function of _deadline_net
    if name in _DEADLINE_NET:
        from . import _deadline_net  # noqa: PLC0415

        return getattr(_deadline_net, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
