"""Compression bombs over loopback: peak memory and time to refusal, BodyDecoder against httpx.

Each bomb is served by a ``LoopbackServer`` (``Fault.body`` sends ``Content-Encoding`` and the
raw bytes as given) and fetched in a fresh subprocess, so each figure is one process's own:

* ``decoder``: ``response.iter_raw()`` fed to ``bastion_balance._transport.BodyDecoder``;
* ``httpx``: ``response.iter_bytes()`` with the cap checked after each decoded chunk (what the
  drivers did before), run only on the single-layer bombs of about 2 MB, so the machine is not
  harmed (the double-gzip bomb drives it to about 8 GB).

Two peaks are reported, both taken after a warm-up fetch of a small gzip answer from another
server (so imports and first-use allocations are not counted):

* ``ru_maxrss+``: ``ru_maxrss`` after the fetch minus ``ru_maxrss`` of the same subprocess just
  before it. On Linux a child's ``ru_maxrss`` starts at the high-water mark of the process that
  spawned it (the kernel keeps the old memory map's peak across ``exec``), so growth below the
  parent's peak does not show here: a 0 means "below that floor", not "nothing".
* ``VmHWM+``: the high-water mark of ``/proc/self/status``, reset to the RSS in use just before
  the fetch (``/proc/self/clear_refs``), minus that RSS: what the fetch itself added at its peak.

The bombs are built a mebibyte at a time and never held
decompressed. ``br`` and ``zstd`` rows appear when brotli (>= 1.2) / zstandard are importable.

    python benchmarks/bombs.py [--cap 4194304]
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import httpx

from bastion_balance._transport import BodyDecoder, supported_encodings
from bastion_balance.exceptions import BastionBalanceError
from bastion_balance.testing._loopback import Fault, LoopbackServer

MIB = 1 << 20
GIB = 1 << 30
ZEROS = bytes(MIB)


class Bomb(NamedTuple):
    name: str
    header: str
    blob: bytes
    decoded: int  # bytes it inflates to, all layers undone
    compare: bool  # also fetch it with httpx's iter_bytes()


def zero_stream(size: int) -> Iterator[bytes]:
    for _ in range(size // MIB):
        yield ZEROS


def deflated(chunks: Iterator[bytes], wbits: int) -> Iterator[bytes]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


class Zeros(NamedTuple):
    """``size`` zero bytes as one raw deflate stream, with the checksums its wrappers need."""

    size: int
    raw: bytes
    crc32: int
    adler32: int

    @classmethod
    def build(cls, size: int) -> Zeros:
        crc, adler = 0, 1
        for chunk in zero_stream(size):
            crc, adler = zlib.crc32(chunk, crc), zlib.adler32(chunk, adler)
        return cls(size, b"".join(deflated(zero_stream(size), -zlib.MAX_WBITS)), crc, adler)

    def gzip(self) -> bytes:
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # no name, no mtime, best compression
        return header + self.raw + struct.pack("<II", self.crc32, self.size & 0xFFFFFFFF)

    def zlib(self) -> bytes:
        return b"\x78\xda" + self.raw + struct.pack(">I", self.adler32)


def optional_module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(names[0])


def build_bombs() -> list[Bomb]:
    two = Zeros.build(2 * GIB)  # deflated once, wrapped twice: the costly part is the deflate
    double = gzip.compress(Zeros.build(4 * GIB).gzip(), compresslevel=9)
    bombs = [
        Bomb("gzip, 2 GiB of zeros", "gzip", two.gzip(), 2 * GIB, True),
        Bomb("deflate, 2 GiB of zeros", "deflate", two.zlib(), 2 * GIB, True),
        Bomb("gzip twice, 4 GiB of zeros", "gzip, gzip", double, 4 * GIB, False),
        Bomb("the same, labelled gzip once", "gzip", double, len(gzip.decompress(double)), True),
    ]
    if "br" in supported_encodings():
        brotli = optional_module("brotli", "brotlicffi")
        compressor = brotli.Compressor(quality=5)
        blob = b"".join([compressor.process(chunk) for chunk in zero_stream(4 * GIB)] + [compressor.finish()])
        bombs.append(Bomb("br, 4 GiB of zeros", "br", blob, 4 * GIB, False))
    if "zstd" in supported_encodings():
        zstandard = optional_module("zstandard")
        zcompressor = zstandard.ZstdCompressor(level=3).compressobj()
        blob = b"".join(
            [zcompressor.compress(chunk) for chunk in zero_stream(4 * GIB)] + [zcompressor.flush()]
        )
        bombs.append(Bomb("zstd, 4 GiB of zeros", "zstd", blob, 4 * GIB, False))
    legit = json.dumps(
        {"rows": [{"asset": f"A{i}", "free": f"{i}.12345678"} for i in range(80_000)]}
    ).encode()
    bombs.append(
        Bomb(f"control: {len(legit) / MIB:.1f} MiB of JSON", "gzip", gzip.compress(legit), len(legit), True)
    )
    return bombs


# -- the child: one fetch, measured ------------------------------------------------------------


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def status_kib(field: str) -> int:
    """``VmRSS`` (in use) or ``VmHWM`` (its high-water mark) from ``/proc/self/status``, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_high_water() -> bool:
    """Bring ``VmHWM`` down to the RSS in use (Linux >= 4.0); ``ru_maxrss`` cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def fetch_with_decoder(response: httpx.Response, cap: int) -> str:
    decoder = BodyDecoder(response.headers.get("content-encoding"), cap, label="bomb")
    for chunk in response.iter_raw():
        decoder.feed(chunk)
    return f"ok, {len(decoder.finish())} bytes"


def fetch_with_httpx(response: httpx.Response, cap: int) -> str:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > cap:
            return f"over the cap after {len(body)} bytes"
    return f"ok, {len(body)} bytes"


def child(mode: str, warm_url: str, url: str, cap: int) -> None:
    fetchers: dict[str, Callable[[httpx.Response, int], str]] = {
        "decoder": fetch_with_decoder,
        "httpx": fetch_with_httpx,
    }
    fetch = fetchers[mode]
    with httpx.Client(timeout=120) as client:
        with client.stream("GET", warm_url) as response:
            fetch(response, cap)
        baseline = peak_rss_kib()
        reset = reset_high_water()
        in_use = status_kib("VmRSS")
        started = time.perf_counter()
        try:
            with client.stream("GET", url) as response:
                outcome = fetch(response, cap)
        except BastionBalanceError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
    growth = status_kib("VmHWM") - in_use if reset else -1024
    result = {
        "outcome": outcome,
        "seconds": elapsed,
        "peak_kib": peak_rss_kib() - baseline,
        "hwm_kib": growth,
    }
    print(json.dumps(result))


# -- the parent: serve, spawn, tabulate --------------------------------------------------------


def warm_answer(request: httpx.Request) -> httpx.Response:
    body = gzip.compress(b'{"result": {"eb": "382.2032"}}' * 100)
    return httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"})


def not_found(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404)


def run_child(mode: str, warm: LoopbackServer, server: LoopbackServer, cap: int) -> dict[str, object]:
    args = [sys.executable, __file__, "--child", mode, warm.url + "/warm", server.url + "/bomb", str(cap)]
    done = subprocess.run(
        args, capture_output=True, text=True, check=False, timeout=600, env=os.environ.copy()
    )
    if done.returncode != 0:
        return {
            "outcome": f"child failed: {done.stderr.strip().splitlines()[-1:]}",
            "seconds": 0.0,
            "peak_kib": 0,
            "hwm_kib": -1024,
        }
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def size(n: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=4 * MIB)
    parser.add_argument(
        "--child", nargs=4, metavar=("MODE", "WARM_URL", "URL", "CAP"), help=argparse.SUPPRESS
    )
    options = parser.parse_args()
    if options.child:
        mode, warm_url, url, cap = options.child
        child(mode, warm_url, url, int(cap))
        return

    started = time.perf_counter()
    bombs = build_bombs()
    print(f"built {len(bombs)} bodies in {time.perf_counter() - started:.1f} s; cap {options.cap} bytes")
    print(f"codings decoded here: {', '.join(supported_encodings())}\n")
    rows = []
    with LoopbackServer(warm_answer) as warm, LoopbackServer(not_found) as server:
        for bomb in bombs:
            for mode in ("decoder", "httpx") if bomb.compare else ("decoder",):
                server.script(Fault.body(bomb.blob, headers={"Content-Encoding": bomb.header}))
                result = run_child(mode, warm, server, options.cap)
                rows.append((bomb, mode, result))
    header = f"{'body':<32} {'Content-Encoding':<16} {'wire':>9} {'inflates to':>11} {'reader':<8} "
    header += f"{'ru_maxrss+':>10} {'VmHWM+':>9} {'time':>8}  outcome"
    print(header)
    print("-" * len(header))
    for bomb, mode, result in rows:
        peak = int(str(result["peak_kib"])) / 1024
        hwm = int(str(result["hwm_kib"])) / 1024
        seconds = float(str(result["seconds"]))
        outcome = str(result["outcome"])
        outcome = outcome.split(":", 1)[0] if "Error" in outcome.split(":", 1)[0] else outcome
        print(
            f"{bomb.name:<32} {bomb.header:<16} {size(len(bomb.blob)):>9} {size(bomb.decoded):>11} {mode:<8} "
            f"{peak:>6.1f} MiB {hwm:>5.1f} MiB {seconds * 1000:>6.0f} ms  {outcome}"
        )


if __name__ == "__main__":
    main()
