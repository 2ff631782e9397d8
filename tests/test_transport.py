"""The transport helpers: bounded body decoding, and the sync deadline over real loopback sockets."""

from __future__ import annotations

import asyncio
import gzip
import pathlib
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import types
import zlib
from collections.abc import Iterator

import httpcore
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion_balance import _transport
from bastion_balance._transport import (
    BodyDecoder,
    DeadlineBackend,
    DeadlineStream,
    DeadlineTransport,
    accept_encoding,
    aread_body,
    current_deadline,
    deadline_scope,
    finished_response,
    read_body,
    supported_encodings,
    sync_transport,
)
from bastion_balance.exceptions import DeadlineExceededError, ResponseTooLargeError, UnexpectedResponseError
from bastion_balance.testing._loopback import Fault, LoopbackServer

DEADLINE = 3.0
SLACK = 0.5  # how far past the deadline a refusal may come on a busy machine
PAYLOAD = b'{"result": {"eb": "382.2032"}, "error": []}'


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=PAYLOAD, headers={"Content-Type": "application/json"})


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(ok) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(transport=sync_transport(limits=httpx.Limits()), timeout=DEADLINE) as http:
        yield http


def fetch(http: httpx.Client, url: str, cap: int = 1 << 20) -> httpx.Response:
    with http.stream("GET", url) as response:
        return finished_response(response, read_body(response, cap, venue="kraken", label="k1"))


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def zeros(size: int, wbits: int, step: int = 1 << 20) -> bytes:
    """``size`` zero bytes compressed, built a step at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [compressor.compress(bytes(min(step, size - done))) for done in range(0, size, step)]
    return b"".join([*parts, compressor.flush()])


def feed_all(decoder: BodyDecoder, blob: bytes, chunk: int) -> None:
    for start in range(0, len(blob), chunk):
        decoder.feed(blob[start : start + chunk])


def decode(encoding: str | None, blob: bytes, cap: int, chunk: int = 4096) -> bytes:
    decoder = BodyDecoder(encoding, cap, venue="kraken", label="k1")
    feed_all(decoder, blob, chunk)
    return decoder.finish()


# -- the sync deadline over loopback ---------------------------------------------------------


def test_header_trickle_ends_at_the_deadline(server: LoopbackServer, client: httpx.Client) -> None:
    server.script(Fault.trickle_head(0.5))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout), deadline_scope(started + DEADLINE):
        fetch(client, server.url + "/0/private/TradeBalance")
    elapsed = time.monotonic() - started
    assert DEADLINE - 0.1 <= elapsed < DEADLINE + SLACK


def test_body_drip_ends_at_the_deadline(server: LoopbackServer, client: httpx.Client) -> None:
    # Every piece comes within the per-read timeout: only the deadline can stop this.
    server.script(Fault.drip([b"x"] * 5, 2.9))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout), deadline_scope(started + DEADLINE):
        fetch(client, server.url + "/")
    elapsed = time.monotonic() - started
    assert DEADLINE - 0.1 <= elapsed < DEADLINE + SLACK


def test_without_a_deadline_the_transport_is_plain_httpx(
    server: LoopbackServer, client: httpx.Client
) -> None:
    assert current_deadline() is None
    server.script(Fault.trickle_head(0.005), Fault.delay(1.0))
    response = fetch(client, server.url + "/")  # each byte comes well within the read timeout
    assert response.content == PAYLOAD
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(httpx.ReadTimeout):  # httpx's own per-read timeout still applies
        client.get(server.url + "/", timeout=0.2)
    assert client.get(server.url + "/").content == PAYLOAD


def test_a_passed_deadline_refuses_before_sending(server: LoopbackServer, client: httpx.Client) -> None:
    with pytest.raises(httpx.ConnectTimeout), deadline_scope(time.monotonic() - 1):
        client.get(server.url + "/")
    assert server.requests == []
    assert client.get(server.url + "/").content == PAYLOAD  # keeps the connection in the pool
    with pytest.raises(httpx.WriteTimeout), deadline_scope(time.monotonic() - 1):
        client.get(server.url + "/")  # the pooled connection: the write is refused
    assert len(server.requests) == 1


def test_a_pooled_connection_obeys_a_later_scope(server: LoopbackServer, client: httpx.Client) -> None:
    assert fetch(client, server.url + "/").content == PAYLOAD  # opened with no deadline set
    server.script(Fault.trickle_head(0.3))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout), deadline_scope(started + 1.0):
        fetch(client, server.url + "/")
    assert time.monotonic() - started < 1.0 + SLACK
    first, second = server.requests
    assert first.connection == second.connection


def test_a_host_name_is_tried_address_by_address(server: LoopbackServer, client: httpx.Client) -> None:
    # "localhost" may resolve to ::1 first, which refuses: the next address is tried.
    with deadline_scope(time.monotonic() + DEADLINE):
        response = client.get(f"http://localhost:{server.port}/")
    assert response.content == PAYLOAD


def test_an_http_proxy_is_bounded_too(server: LoopbackServer) -> None:
    transport = sync_transport(limits=httpx.Limits(), proxy=server.url)
    server.script(Fault.trickle_head(0.3))
    with httpx.Client(transport=transport, timeout=DEADLINE) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout), deadline_scope(started + 1.0):
            http.get("http://venue.invalid/0/public/Time")
        assert time.monotonic() - started < 1.0 + SLACK
    assert server.requests[0].path == "http://venue.invalid/0/public/Time"


def test_socks_proxies_are_refused() -> None:
    with pytest.raises(ValueError, match="HTTP or HTTPS proxies only"):
        sync_transport(limits=httpx.Limits(), proxy="socks5://127.0.0.1:1080")


def test_the_transport_is_httpx_with_our_backend() -> None:
    limits = httpx.Limits(max_connections=7, max_keepalive_connections=3, keepalive_expiry=2.0)
    transport = sync_transport(limits=limits, http2=False, retries=1)
    assert isinstance(transport, httpx.HTTPTransport)
    assert isinstance(transport, DeadlineTransport)
    assert isinstance(transport.network_backend, DeadlineBackend)
    transport.close()


def test_deadline_scopes_nest_and_stay_in_their_thread() -> None:
    now = time.monotonic()
    seen: list[float | None] = []
    with deadline_scope(now + 10):
        assert current_deadline() == now + 10
        with deadline_scope(now + 20):  # a nested scope never extends the outer one
            assert current_deadline() == now + 10
        with deadline_scope(now + 5):
            assert current_deadline() == now + 5
            worker = threading.Thread(target=lambda: seen.append(current_deadline()))
            worker.start()
            worker.join()
        assert current_deadline() == now + 10
    assert current_deadline() is None
    assert seen == [None]


class RecordingStream(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, float | None]] = []

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.calls.append(("read", max_bytes, timeout))
        return b"x"

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.calls.append(("write", len(buffer), timeout))

    def close(self) -> None:
        self.calls.append(("close", 0, None))

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self.calls.append(("start_tls", 0, timeout))
        return RecordingStream()

    def get_extra_info(self, info: str) -> object:
        return f"info:{info}"


def test_the_stream_shortens_every_timeout_to_the_time_left() -> None:
    inner = RecordingStream()
    stream = DeadlineStream(inner)
    stream.read(10, timeout=60.0)  # no deadline: passed through
    with deadline_scope(time.monotonic() + 2.0):
        stream.read(10, timeout=60.0)
        stream.read(10, timeout=0.5)
        stream.read(10, timeout=None)
        stream.write(b"a" * 40_000, timeout=60.0)
        tls = stream.start_tls(ssl.create_default_context(), "venue.example", timeout=60.0)
    timeouts = [timeout for _, _, timeout in inner.calls]
    assert timeouts[0] == 60.0
    assert all(t is not None and 1.5 < t <= 2.0 for t in timeouts[1:] if t != 0.5)
    assert timeouts[2] == 0.5
    writes = [size for kind, size, _ in inner.calls if kind == "write"]
    assert sum(writes) == 40_000
    assert len(writes) > 1  # written in pieces, each with the time then left
    assert isinstance(tls, DeadlineStream)
    assert stream.get_extra_info("socket") == "info:socket"


def test_the_stream_refuses_once_the_deadline_passed() -> None:
    inner = RecordingStream()
    stream = DeadlineStream(inner)
    with deadline_scope(time.monotonic() - 0.01):
        with pytest.raises(httpcore.ReadTimeout):
            stream.read(10, timeout=5.0)
        with pytest.raises(httpcore.WriteTimeout):
            stream.write(b"abc", timeout=5.0)
        with pytest.raises(httpcore.ConnectTimeout):
            stream.start_tls(ssl.create_default_context(), "venue.example", timeout=5.0)
        with pytest.raises(httpcore.ConnectTimeout):
            DeadlineBackend().connect_tcp("127.0.0.1", 9, timeout=5.0)
        with pytest.raises(httpcore.ConnectTimeout):
            DeadlineBackend().sleep(5.0)
    assert inner.calls == []


def test_the_backend_sleep_ends_by_the_deadline() -> None:
    started = time.monotonic()
    with deadline_scope(started + 0.2):
        DeadlineBackend().sleep(30.0)
    assert time.monotonic() - started < 0.2 + SLACK


# -- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "identity", " Identity "])
def test_identity_is_passed_through(header: str | None) -> None:
    decoder = BodyDecoder(header, 100)
    assert decoder.encoding == "identity"
    assert decode(header, PAYLOAD, 100, chunk=3) == PAYLOAD


@pytest.mark.parametrize(
    ("header", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("identity, gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
    ],
)
@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_round_trips(header: str, encode: object, chunk: int) -> None:
    data = PAYLOAD * 500
    assert callable(encode)
    assert decode(header, encode(data), len(data), chunk=chunk) == data


def test_concatenated_gzip_members_are_one_body() -> None:
    assert decode("gzip", gzip.compress(b"abc") + gzip.compress(b"def"), 100, chunk=5) == b"abcdef"


def test_an_empty_body_needs_no_compressed_data() -> None:
    for header in ("gzip", "deflate"):
        assert BodyDecoder(header, 10).finish() == b""


@pytest.mark.skipif("br" not in supported_encodings(), reason="no brotli >= 1.2")
def test_brotli_round_trip_and_bomb() -> None:
    import brotli  # type: ignore[import-not-found,unused-ignore]

    data = PAYLOAD * 500
    assert decode("br", brotli.compress(data), len(data), chunk=11) == data
    compressor = brotli.Compressor(quality=5)
    bomb = b"".join([compressor.process(bytes(1 << 20)) for _ in range(256)] + [compressor.finish()])
    decoder = BodyDecoder("br", 1 << 20)
    with pytest.raises(ResponseTooLargeError):
        decoder.feed(bomb)
    assert decoder.decoded_bytes <= 1 << 20


@pytest.mark.skipif("zstd" not in supported_encodings(), reason="no zstandard")
def test_zstd_round_trip_frames_and_bomb() -> None:
    import zstandard  # type: ignore[import-not-found,unused-ignore]

    data = PAYLOAD * 500
    frames = zstandard.ZstdCompressor().compress(data) + zstandard.ZstdCompressor().compress(b"tail")
    assert decode("zstd", frames, len(data) + 4, chunk=13) == data + b"tail"
    compressor = zstandard.ZstdCompressor(level=19).compressobj()
    bomb = b"".join([compressor.compress(bytes(1 << 20)) for _ in range(256)] + [compressor.flush()])
    decoder = BodyDecoder("zstd", 1 << 20)
    with pytest.raises(ResponseTooLargeError):
        decoder.feed(bomb)


@pytest.mark.parametrize("header", ["gzip, gzip", "gzip, br", "deflate,gzip", "gzip,\tidentity, deflate"])
def test_stacked_codings_are_refused(header: str) -> None:
    with pytest.raises(UnexpectedResponseError) as caught:
        BodyDecoder(header, 1 << 20, venue="kraken", label="k1")
    assert type(caught.value) is UnexpectedResponseError
    assert caught.value.venue == "kraken"
    message = str(caught.value)
    assert message.startswith("k1: ")
    assert "stacks several content codings" in message
    assert repr(header) in message


@pytest.mark.parametrize("header", ["compress", "snappy", "gzip;q=1"])
def test_unknown_codings_are_refused(header: str) -> None:
    with pytest.raises(UnexpectedResponseError, match="is not supported") as caught:
        BodyDecoder(header, 1 << 20, venue="kraken", label="k1")
    assert repr(header.strip().lower()) in str(caught.value)
    assert caught.value.venue == "kraken"


def test_unavailable_codings_are_refused_as_unknown() -> None:
    for name in ("br", "zstd"):
        if name not in supported_encodings():
            with pytest.raises(UnexpectedResponseError, match=f"'{name}' is not supported"):
                BodyDecoder(name, 100)


def test_accept_encoding_names_what_is_decoded() -> None:
    assert accept_encoding().startswith("gzip, deflate")
    assert accept_encoding() == ", ".join(supported_encodings())
    for name in supported_encodings():
        BodyDecoder(name, 10)


@pytest.mark.parametrize(
    ("header", "blob"),
    [
        ("gzip", b"this is not gzip at all"),
        ("gzip", gzip.compress(PAYLOAD)[:-6]),  # truncated: no trailer
        ("gzip", gzip.compress(PAYLOAD) + b"\x00\x00"),  # trailing garbage
        ("gzip", gzip.compress(PAYLOAD)[:1]),
        ("deflate", zlib.compress(PAYLOAD)[:-3]),
        ("deflate", zlib.compress(PAYLOAD) + b"more"),
        ("deflate", b"\x78"),
    ],
)
def test_corrupt_or_truncated_data_is_refused(header: str, blob: bytes) -> None:
    with pytest.raises(
        UnexpectedResponseError, match=f"k1: the answer's {header} data is corrupt or truncated"
    ):
        decode(header, blob, 1 << 20, chunk=5)


def test_a_gzip_bomb_is_refused_holding_about_the_cap() -> None:
    import tracemalloc

    cap = 1 << 20
    bomb = zeros(256 << 20, 16 + zlib.MAX_WBITS)  # 256 MiB of zeros, about 250 KB
    tracemalloc.start()
    try:
        decoder = BodyDecoder("gzip", cap, venue="kraken", label="k1")
        with pytest.raises(
            ResponseTooLargeError, match=f"^k1: response body is larger than {cap} bytes$"
        ) as caught:
            feed_all(decoder, bomb, 1 << 16)  # httpx's read size
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.venue == "kraken"
    assert decoder.decoded_bytes <= cap
    assert peak < 3 * cap + len(bomb)  # the body so far, one step and the input; never a chunk's worth


def test_a_stacked_bomb_is_refused_before_reading() -> None:
    inner = zeros(64 << 20, 16 + zlib.MAX_WBITS)
    with pytest.raises(UnexpectedResponseError, match="stacks several content codings"):
        BodyDecoder("gzip, gzip", 1 << 20).feed(gzip.compress(inner))


def test_a_deflate_bomb_is_refused() -> None:
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        with pytest.raises(ResponseTooLargeError):
            decode("deflate", zeros(64 << 20, wbits), 1 << 20, chunk=1 << 16)


def test_the_cap_is_exact_and_also_bounds_the_raw_stream() -> None:
    data = bytes(range(256)) * 40
    assert decode("gzip", gzip.compress(data), len(data)) == data
    with pytest.raises(ResponseTooLargeError):
        decode("gzip", gzip.compress(data), len(data) - 1)
    assert decode(None, data, len(data)) == data
    with pytest.raises(ResponseTooLargeError):
        decode(None, data, len(data) - 1)
    noise = gzip.compress(bytes((i * 7919) % 251 for i in range(20_000)), compresslevel=0)
    decoder = BodyDecoder("gzip", 10_000)
    with pytest.raises(ResponseTooLargeError):
        decoder.feed(noise)  # refused on its raw size, before inflating it
    assert decoder.decoded_bytes == 0


def test_decoder_misuse() -> None:
    with pytest.raises(ValueError, match="cap"):
        BodyDecoder(None, -1)
    with pytest.raises(ValueError, match="cap"):
        BodyDecoder(None, True)
    decoder = BodyDecoder(None, 10)
    decoder.finish()
    with pytest.raises(RuntimeError):
        decoder.feed(b"x")


@st.composite
def compressed(draw: st.DrawFn) -> tuple[str, bytes, bytes, int]:
    data = draw(
        st.binary(max_size=4096)
        | st.builds(lambda n, b: b * n, st.integers(0, 5000), st.binary(min_size=1, max_size=3))
    )
    header, blob = draw(
        st.sampled_from(
            [
                ("gzip", gzip.compress(data)),
                ("deflate", zlib.compress(data)),
                ("deflate", raw_deflate(data)),
                (None, data),
            ]
        )
    )
    return header, data, blob, draw(st.integers(1, 600))


@given(compressed())
def test_property_any_bytes_round_trip(case: tuple[str, bytes, bytes, int]) -> None:
    header, data, blob, chunk = case
    assert decode(header, blob, max(len(data), len(blob)), chunk=chunk) == data


@given(compressed(), st.data())
def test_property_over_the_cap_always_raises(
    case: tuple[str, bytes, bytes, int], draw: st.DataObject
) -> None:
    header, data, blob, chunk = case
    if not data:
        return
    cap = draw.draw(st.integers(0, len(data) - 1))
    with pytest.raises(ResponseTooLargeError):
        decode(header, blob, cap, chunk=chunk)


# -- the driver's loop over loopback -------------------------------------------------------------


def test_a_served_gzip_body_is_decoded_and_its_headers_dropped(
    server: LoopbackServer, client: httpx.Client
) -> None:
    # Fault.body sends Content-Encoding as given, with the raw bytes.
    blob = gzip.compress(PAYLOAD * 100)
    server.script(Fault.body(blob, headers={"Content-Encoding": "gzip", "X-Venue": "kraken"}))
    with client.stream("GET", server.url + "/") as response:
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["content-length"] == str(len(blob))
        finished = finished_response(response, read_body(response, 1 << 20))
    assert finished.content == PAYLOAD * 100
    assert "content-encoding" not in finished.headers
    assert finished.headers["x-venue"] == "kraken"
    assert finished.request.url == server.url + "/"


def test_a_served_bomb_is_refused(server: LoopbackServer, client: httpx.Client) -> None:
    server.script(
        Fault.body(zeros(128 << 20, 16 + zlib.MAX_WBITS), headers={"Content-Encoding": "gzip"}),
        Fault.body(
            gzip.compress(zeros(128 << 20, 16 + zlib.MAX_WBITS)), headers={"Content-Encoding": "gzip, gzip"}
        ),
    )
    with pytest.raises(ResponseTooLargeError, match="larger than 1048576 bytes"):
        fetch(client, server.url + "/", cap=1 << 20)
    with pytest.raises(UnexpectedResponseError, match="stacks"):
        fetch(client, server.url + "/", cap=1 << 20)
    assert client.get(server.url + "/").content == PAYLOAD


def test_the_async_loop_decodes_too(server: LoopbackServer) -> None:
    server.script(Fault.body(raw_deflate(PAYLOAD), headers={"Content-Encoding": "deflate"}))

    async def run() -> bytes:
        async with httpx.AsyncClient() as http, http.stream("GET", server.url + "/") as response:
            return await aread_body(response, 1 << 20, venue="kraken", label="k1")

    assert asyncio.run(run()) == PAYLOAD


SECRET = b"tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def _locals_text(exc: BaseException) -> str:
    """The exception and its causes, and every local of their frames in ``_transport``, as an
    error tracker shows them (the test's own frames, which hold the body, are left out)."""
    parts = []
    link: BaseException | None = exc
    while link is not None:
        parts += [repr(link), repr(link.args), repr(vars(link))]
        for frame, _ in traceback.walk_tb(link.__traceback__):
            if frame.f_code.co_filename != _transport.__file__:
                continue
            parts.append(f"frame {frame.f_code.co_qualname}")
            for name, value in dict(frame.f_locals).items():
                parts.append(f"{name} = {value!r}")
                if isinstance(value, BodyDecoder):
                    parts.append(repr(vars(value)))
        link = link.__cause__ or link.__context__
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("header", "blob", "error"),
    [
        (None, b'{"access_token": "' + SECRET + b'"}', ResponseTooLargeError),
        ("gzip", gzip.compress(b'{"access_token": "' + SECRET + b'"}'), ResponseTooLargeError),
        ("gzip", b"\x1f\x8b\x08\x00" + SECRET, UnexpectedResponseError),
        ("deflate", raw_deflate(b"x") + SECRET, UnexpectedResponseError),
    ],
)
def test_a_refused_body_leaves_no_bytes_in_the_traceback(
    header: str | None, blob: bytes, error: type[Exception]
) -> None:
    decoder = BodyDecoder(header, 30 if error is ResponseTooLargeError else 1 << 20)
    with pytest.raises(error) as caught:
        decoder.feed(blob)
    text = _locals_text(caught.value)
    assert "frame BodyDecoder.feed" in text  # the walk does see the decoder's frame
    assert SECRET.decode() not in text
    assert SECRET not in bytes(decoder._out)
    with pytest.raises(RuntimeError):
        decoder.feed(b"more")


def test_read_body_leaves_no_chunk_in_its_frame(server: LoopbackServer, client: httpx.Client) -> None:
    server.script(Fault.body(b'{"access_token": "' + SECRET + b'", "pad": "' + b"x" * 200 + b'"}'))
    with pytest.raises(ResponseTooLargeError) as caught, client.stream("GET", server.url + "/") as response:
        read_body(response, 100)
    text = _locals_text(caught.value)
    assert "frame read_body" in text
    assert SECRET.decode() not in text


# -- edges of the decoders and of the deadline backend ------------------------------------


@pytest.mark.skipif("br" not in supported_encodings(), reason="no brotli >= 1.2")
def test_brotli_empty_chunks_trailing_bytes_and_a_first_step_over_the_cap() -> None:
    import brotli  # type: ignore[import-not-found,unused-ignore]

    blob = brotli.compress(PAYLOAD)
    decoder = BodyDecoder("br", 1 << 20, venue="kraken", label="k1")
    decoder.feed(b"")  # an empty read changes nothing
    decoder.feed(blob)
    decoder.feed(b"")
    assert decoder.finish() == PAYLOAD

    after_end = BodyDecoder("br", 1 << 20, venue="kraken", label="k1")
    after_end.feed(blob)  # the stream is complete here
    with pytest.raises(UnexpectedResponseError, match=r"^k1: the answer's br data is corrupt or truncated$"):
        after_end.feed(b"more")
    assert after_end.decoded_bytes == 0  # what was decoded is dropped with the error

    bomb = brotli.compress(bytes(100_000))
    assert len(bomb) < 100
    small = BodyDecoder("br", 100, venue="kraken", label="k1")  # the first step already passes it
    with pytest.raises(ResponseTooLargeError, match=r"^k1: response body is larger than 100 bytes$"):
        small.feed(bomb)
    assert small.decoded_bytes == 0


def test_a_brotli_stream_that_stops_making_progress_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decompressor that says it has more output but gives none is corrupt, not a loop."""
    calls = [0]

    class Error(Exception):
        pass

    class Stuck:
        def is_finished(self) -> bool:
            return False

        def can_accept_more_data(self) -> bool:
            return False

        def process(self, data: bytes, output_buffer_limit: int) -> bytes:
            calls[0] += 1
            if calls[0] > 100:
                raise AssertionError("the decoder kept asking a stuck decompressor")
            return b"{" if data else b""

    stuck = types.SimpleNamespace(error=Error, Decompressor=Stuck)
    monkeypatch.setattr(_transport, "_brotli", lambda: stuck)
    decoder = BodyDecoder("br", 1 << 20, venue="kraken", label="k1")
    with pytest.raises(UnexpectedResponseError, match=r"^k1: the answer's br data is corrupt or truncated$"):
        decoder.feed(b"\x8b\x00\x80")
    assert calls[0] == 2  # one step with the input, one without: no progress, refused
    assert decoder.encoding == "br"


@pytest.fixture
def fresh_codec_lookup() -> Iterator[None]:
    """The brotli / zstandard lookups are cached: forget them before and after the test."""
    _transport._brotli.cache_clear()
    _transport._zstandard.cache_clear()
    yield
    _transport._brotli.cache_clear()
    _transport._zstandard.cache_clear()


@pytest.mark.usefixtures("fresh_codec_lookup")
def test_codec_modules_that_cannot_bound_their_output_are_not_offered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """brotli older than 1.2 (no output limit), no brotlicffi and no zstandard: only gzip and
    deflate are offered and decoded; br and zstd answers are refused as unsupported."""
    old_brotli = types.ModuleType("brotli")
    old_brotli.Decompressor = type("Decompressor", (), {})  # type: ignore[attr-defined]
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "brotli", old_brotli)
        patch.setitem(sys.modules, "brotlicffi", None)  # None in sys.modules: ImportError
        patch.setitem(sys.modules, "zstandard", None)
        assert supported_encodings() == ("gzip", "deflate")
        assert accept_encoding() == "gzip, deflate"
        for name in ("br", "zstd"):
            with pytest.raises(
                UnexpectedResponseError,
                match=rf"'{name}' is not supported \(accepted: identity, gzip, deflate\)",
            ):
                BodyDecoder(name, 100)
        _transport._brotli.cache_clear()
        _transport._zstandard.cache_clear()


@pytest.mark.usefixtures("fresh_codec_lookup")
def test_brotlicffi_is_used_when_brotli_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    cffi = types.ModuleType("brotlicffi")
    cffi.Decompressor = type("Decompressor", (), {"can_accept_more_data": lambda self: True})  # type: ignore[attr-defined]
    cffi.error = ValueError  # type: ignore[attr-defined]
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "brotli", None)
        patch.setitem(sys.modules, "brotlicffi", cffi)
        assert _transport._brotli() is cffi
        assert "br" in supported_encodings()
        assert BodyDecoder("br", 100).encoding == "br"
        _transport._brotli.cache_clear()
        _transport._zstandard.cache_clear()


def test_the_decoder_counts_raw_and_decoded_bytes() -> None:
    data = PAYLOAD * 50
    blob = gzip.compress(data)
    decoder = BodyDecoder("gzip", 1 << 20)
    feed_all(decoder, blob, 100)
    assert decoder.raw_bytes == len(blob)
    assert decoder.decoded_bytes == len(data)
    assert decoder.finish() == data
    with pytest.raises(RuntimeError, match=r"finish\(\) after finish\(\)"):
        decoder.finish()


def test_a_failed_decoder_keeps_its_coding_name_and_refuses_more_work() -> None:
    decoder = BodyDecoder("gzip", 1 << 20, label="k1")
    with pytest.raises(UnexpectedResponseError, match="k1: the answer's gzip data is corrupt"):
        decoder.feed(b"this is not gzip at all")
    assert decoder.encoding == "gzip"
    assert decoder.decoded_bytes == 0
    with pytest.raises(RuntimeError, match=r"feed\(\) after finish\(\) or after an error"):
        decoder.feed(gzip.compress(PAYLOAD))
    with pytest.raises(RuntimeError, match=r"finish\(\) after finish\(\) or after an error"):
        decoder.finish()
    truncated = BodyDecoder("deflate", 1 << 20, label="k1")
    truncated.feed(zlib.compress(PAYLOAD)[:-3])
    with pytest.raises(
        UnexpectedResponseError, match="k1: the answer's deflate data is corrupt or truncated"
    ):
        truncated.finish()
    assert truncated.encoding == "deflate"
    with pytest.raises(RuntimeError):
        truncated.finish()


def test_read_body_stops_between_chunks_once_the_deadline_passed(server: LoopbackServer) -> None:
    """A caller's own httpx client has no deadline backend: the deadline is checked per chunk."""
    server.script(Fault.body(PAYLOAD))
    with (
        httpx.Client() as http,
        http.stream("GET", server.url + "/0/private/Balance?x=signature") as response,
    ):
        with pytest.raises(DeadlineExceededError) as caught:
            read_body(response, 1 << 20, venue="kraken", label="k1", deadline=time.monotonic() - 1)
    assert str(caught.value) == "k1: deadline passed while reading the answer (127.0.0.1/0/private/Balance)"
    assert caught.value.venue == "kraken"
    with httpx.Client() as http, http.stream("GET", server.url + "/") as response:
        assert read_body(response, 1 << 20, deadline=time.monotonic() + 60) == PAYLOAD


def test_closing_a_stream_without_a_socket_closes_the_inner_stream() -> None:
    inner = RecordingStream()  # get_extra_info("socket") is not a socket here
    DeadlineStream(inner).close()
    assert inner.calls == [("close", 0, None)]


def test_a_name_that_does_not_resolve_is_a_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def unresolvable(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    with httpx.Client(transport=sync_transport(limits=httpx.Limits())) as http:
        with pytest.raises(httpx.ConnectError, match="Name or service not known"):
            with deadline_scope(time.monotonic() + DEADLINE):
                http.get("http://venue.invalid/0/public/Time")


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets")
def test_a_unix_socket_connection_is_bounded_too(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "venue.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    accepted: list[bytes] = []

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            accepted.append(head)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    worker = threading.Thread(target=serve_one)
    worker.start()
    try:
        with httpx.Client(transport=sync_transport(limits=httpx.Limits(), uds=path)) as http:
            with pytest.raises(httpx.ConnectTimeout), deadline_scope(time.monotonic() - 1):
                http.get("http://venue.local/0/public/Time")  # refused before connecting
            with deadline_scope(time.monotonic() + DEADLINE):
                response = http.get("http://venue.local/0/public/Time")
        assert response.content == b"ok"
    finally:
        worker.join(DEADLINE)
        listener.close()
    assert len(accepted) == 1 and accepted[0].startswith(b"GET /0/public/Time HTTP/1.1")


def test_the_deadline_layer_loads_on_first_use() -> None:
    """``import bastion_balance`` does not import httpcore; the deadline layer (which needs it)
    is reached through ``_transport`` by name, and unknown names are refused."""
    code = (
        "import sys, httpx\n"
        "import bastion_balance, bastion_balance._transport as t\n"
        "print('httpcore' in sys.modules)\n"
        "t.sharded_sync_transport(2).close()\n"
        "print('httpcore' in sys.modules, t.DeadlineBackend.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "bastion_balance._deadline_net"]
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _transport.Nope  # noqa: B018
