"""The sync deadline, per socket call: an httpcore network backend and the transport that uses it.

:class:`DeadlineBackend` is an httpcore network backend whose every connect, read, write and TLS
handshake waits at most until the deadline set for the current thread with
``_transport.deadline_scope``, so a status line, headers or a body trickling in byte by byte
cannot outlast it. :func:`sync_transport` builds an ``httpx.HTTPTransport`` that uses it; httpx's
exception mapping is kept, so callers see ``httpx.ReadTimeout`` and friends.

Kept apart from ``_transport`` because it needs httpcore at import (about 40 ms): it is loaded
when the first connection pool is made, as httpx itself loads httpcore.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any, Final

import httpcore
import httpx

from ._transport import current_deadline

__all__ = ["DeadlineBackend", "DeadlineStream", "DeadlineTransport", "sync_transport"]

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
CertTypes = str | tuple[str, str] | tuple[str, str, str]

_WRITE_PIECE: Final = 16 * 1024


def _time_left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` shortened to the time left before this thread's deadline; raises past it."""
    deadline = current_deadline()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads, writes and TLS handshake end by the thread's deadline.

    Raises httpcore's ``ReadTimeout`` / ``WriteTimeout`` / ``ConnectTimeout`` (mapped by httpx
    to its own) once the deadline has passed, or when a call is still waiting at it.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # The inner stream gives each send() the whole timeout; pieces keep a slow reader from
        # stretching one write past the deadline.
        view = memoryview(buffer)
        while view:
            piece, view = view[:_WRITE_PIECE], view[_WRITE_PIECE:]
            self._stream.write(piece.tobytes(), _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        # Shut the socket down first: a thread blocked reading it (a worker of an interrupted
        # aggregate whose pool is being closed) wakes at once; a bare close() would not wake it.
        sock = self._stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # The socket timeout bounds the whole handshake (Python >= 3.5), not each record.
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:  # noqa: ANN401  # httpcore's signature
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.SyncBackend):
    """httpcore's sync backend, with every wait bounded by the thread's :func:`deadline_scope`.

    Without a deadline set it behaves exactly as ``httpcore.SyncBackend`` (streams are still
    wrapped, so a later scope bounds a pooled connection too). With one, each address of the
    host is tried with the time left (``socket.create_connection`` would give each the whole
    timeout). Name resolution itself is not bounded: ``getaddrinfo`` cannot be interrupted.
    """

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        if current_deadline() is None:
            return DeadlineStream(super().connect_tcp(host, port, timeout, local_address, socket_options))
        options = list(socket_options or ())
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        last: httpcore.ConnectError | None = None
        for address in addresses:
            left = _time_left(timeout, httpcore.ConnectTimeout)
            try:
                return DeadlineStream(super().connect_tcp(address, port, left, local_address, options))
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host!r}")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(super().connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        left = _time_left(None, httpcore.ConnectTimeout)
        time.sleep(seconds if left is None else min(seconds, left))


class DeadlineTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose httpcore pool runs on a :class:`DeadlineBackend`.

    Takes ``HTTPTransport``'s arguments (``proxy`` for HTTP/HTTPS proxies only) and builds the
    same pool, adding ``network_backend=``; ``handle_request`` and its exception mapping are
    httpx's own.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits,
        proxy: str | httpx.URL | httpx.Proxy | None = None,
        uds: str | None = None,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[SocketOption] | None = None,
        network_backend: httpcore.NetworkBackend | None = None,
    ) -> None:
        proxy = httpx.Proxy(url=proxy) if isinstance(proxy, str | httpx.URL) else proxy
        if proxy is not None and proxy.url.scheme not in {"http", "https"}:
            msg = f"sync_transport() takes HTTP or HTTPS proxies only, got {proxy.url.scheme!r}"
            raise ValueError(msg)
        ssl_context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        super().__init__(  # whatever else httpx sets up; its pool is replaced below
            verify=ssl_context,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=limits,
            proxy=proxy,
            uds=uds,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
        )
        self._pool.close()  # never used, holds no connection
        backend = network_backend if network_backend is not None else DeadlineBackend()
        self.network_backend = backend
        if proxy is None:
            self._pool = httpcore.ConnectionPool(
                ssl_context=ssl_context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                http1=http1,
                http2=http2,
                uds=uds,
                local_address=local_address,
                retries=retries,
                socket_options=socket_options,
                network_backend=backend,
            )
        else:
            self._pool = httpcore.HTTPProxy(
                proxy_url=httpcore.URL(
                    scheme=proxy.url.raw_scheme,
                    host=proxy.url.raw_host,
                    port=proxy.url.port,
                    target=proxy.url.raw_path,
                ),
                proxy_auth=proxy.raw_auth,
                proxy_headers=proxy.headers.raw,
                ssl_context=ssl_context,
                proxy_ssl_context=proxy.ssl_context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                http1=http1,
                http2=http2,
                socket_options=socket_options,
                network_backend=backend,
            )


def sync_transport(*, limits: httpx.Limits, **kwargs: Any) -> httpx.HTTPTransport:  # noqa: ANN401
    """An ``httpx.HTTPTransport`` on a :class:`DeadlineBackend`; see :class:`DeadlineTransport`.

    ``kwargs`` are ``HTTPTransport``'s (``verify``, ``cert``, ``trust_env``, ``http1``,
    ``http2``, ``proxy``, ``uds``, ``local_address``, ``retries``, ``socket_options``).
    """
    return DeadlineTransport(limits=limits, **kwargs)
