"""Open-loop load: requests leave on a fixed schedule whatever the answers (no coordinated
omission), over a small pool of plain keep-alive connections to 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from bench.common import LOCAL
from bench.report import percentile


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client for the open-loop load (127.0.0.1 only).

    httpx costs about a millisecond of CPU per request; on two cores shared with the platform
    the load generator then competes with what it measures. Pre-built request bytes over a
    pool of plain asyncio connections cost a small fraction of that.
    """

    def __init__(self, url: str, size: int) -> None:
        parsed = httpx.URL(url)
        if parsed.host != LOCAL:
            raise ValueError("the bench only loads 127.0.0.1")
        self.host, self.port, self.path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.gate = asyncio.Semaphore(size)
        self.opened: list[asyncio.StreamWriter] = []

    def build(self, headers: dict[str, str], body: bytes) -> bytes:
        head = [f"POST {self.path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"content-length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def send(self, raw: bytes, timeout_s: float = 60) -> tuple[int, bytes]:
        async with self.gate:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.opened.append(writer)
            status, body = await asyncio.wait_for(self._exchange(reader, writer, raw), timeout_s)
            self.idle.append((reader, writer))
            return status, body

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
    ) -> tuple[int, bytes]:
        writer.write(raw)
        status = int((await reader.readline()).split()[1])
        length, chunked = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await reader.readexactly(length)
        parts = []
        while size := int((await reader.readline()).strip(), 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        return status, b"".join(parts)

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def open_loop(
    url: str,
    make_request: Callable[[int], tuple[dict[str, str], bytes]],
    rate: float,
    seconds: float,
    on_done: Callable[[int, float, int, bytes], None] | None = None,
    max_in_flight: int = 128,
) -> dict[str, float]:
    """Send at a fixed rate regardless of answers (no coordinated omission); latency per request.

    Latency counts from each request's scheduled time, so time spent waiting for one of the
    `max_in_flight` connections is the server's fault too.
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate * seconds)
    client = RawHttp(url, max_in_flight)
    prepared = [client.build(*make_request(i)) for i in range(total)]  # not part of the load
    try:
        start = time.perf_counter()

        async def one(i: int, scheduled: float) -> None:
            try:
                status, body = await client.send(prepared[i])
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
                statuses[0] = statuses.get(0, 0) + 1
                return
            done = time.perf_counter()
            latencies.append((done - scheduled) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if on_done:
                on_done(i, time.time(), status, body)

        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "offered_rps": rate,
        "achieved_rps": round(ok / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "ok": ok,
        "errors": total - ok,
    }
