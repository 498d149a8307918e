"""A fault-injecting TCP proxy (asyncio, in a thread of its own) in front of a server.

Give one client (an operator replica) a kubeconfig that points at the proxy
(`kubeconfig_via`) and the test can partition that client alone:

- `stall()`: nothing moves in either direction any more, and new connections are
  accepted but not connected through: what the client sends is read and held, in
  order, as by a network that stops delivering. The client's requests time out; the
  server hears nothing from it.
- `release()`: everything held is delivered, in order, even for connections the client
  has closed meanwhile: requests the client gave up on still reach the server late,
  the worst a network can do to a client that believes it stopped writing.

TLS passes through untouched (the proxy sees bytes only), so the client still
verifies the API server's certificate (its SANs include 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from urllib.parse import urlsplit

import yaml

CHUNK = 65536
LINGER = 5.0


class FaultProxy:
    def __init__(self, target: str) -> None:
        """target: https://HOST:PORT (a kubeconfig's server URL)."""
        parts = urlsplit(target)
        if not parts.hostname or not parts.port:
            raise ValueError(f"not a HOST:PORT URL: {target}")
        self.host, self.target_port = parts.hostname, parts.port
        self.port = 0
        self.connections = 0
        self.held_chunks = 0  # chunks that waited for a release (both directions)
        # Connections whose client sent bytes the stall held, and whether that client
        # has closed its end since (it gave up: a timed-out request).
        self._holding: dict[int, bool] = {}
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control (from the test's thread) -------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stall(self) -> None:
        self._call(lambda: self._gate().clear())

    def release(self) -> None:
        self._call(lambda: self._gate().set())

    @property
    def stalled(self) -> bool:
        return not self._gate().is_set()

    def settled(self) -> bool:
        """Released, and every connection that carried requests its client gave up on
        during the stall is closed: the server has had those requests and answered or
        dropped them. (A held connection whose client is still there, e.g. a watch
        opened during the stall, is just a connection again.)"""
        return not self.stalled and not any(self._holding.values())

    def stop(self) -> None:
        async def close() -> None:
            self._gate().set()
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in list(self._writers):
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def kubeconfig_via(self, kubeconfig: Path, out: Path) -> Path:
        """A copy of kubeconfig whose clusters point at this proxy."""
        config = yaml.safe_load(kubeconfig.read_text())
        for cluster in config.get("clusters") or ():
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        out.write_text(yaml.safe_dump(config))
        return out

    def _call(self, action: object) -> None:
        done = threading.Event()

        def run() -> None:
            action()  # type: ignore[operator]
            done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(timeout=10)

    # -- the proxy (on its own loop) -------------------------------------------------

    def _gate(self) -> asyncio.Event:
        assert self._flowing is not None
        return self._flowing

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._writers.add(writer)
        # What the client sends is always read (and held in order while stalled), so
        # the proxy knows at once when a client gives up and closes its end.
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        reading = asyncio.create_task(self._read_client(reader, queue, number))
        ends = [writer]
        try:
            await self._gate().wait()  # a stalled network connects nothing through
            try:
                up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
            except OSError:
                return
            ends.append(up_writer)
            self._writers.add(up_writer)
            await asyncio.gather(self._forward(queue, up_writer), self._pump(up_reader, writer))
        finally:
            reading.cancel()
            self._holding.pop(number, None)
            for end in ends:
                self._writers.discard(end)
                end.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await end.wait_closed()

    async def _read_client(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[bytes | None], number: int
    ) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                stalled = not self._gate().is_set()
                if not data:
                    if number in self._holding:
                        self._holding[number] = True  # its client gave up
                    break
                if stalled:
                    self.held_chunks += 1
                    self._holding.setdefault(number, False)
                queue.put_nowait(data)
        except (ConnectionError, OSError):
            pass
        queue.put_nowait(None)

    async def _forward(
        self, queue: asyncio.Queue[bytes | None], writer: asyncio.StreamWriter
    ) -> None:
        """Client bytes to the server, in order, whenever the network flows."""
        try:
            while (data := await queue.get()) is not None:
                await self._gate().wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        # The end of a closed client's stream is passed on only a while after its last
        # bytes: the server handles a late request as one over a connection still open.
        await asyncio.sleep(LINGER)
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server bytes to the client, held while stalled."""
        try:
            while data := await reader.read(CHUNK):
                if not self._gate().is_set():
                    self.held_chunks += 1
                    await self._gate().wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                writer.close()
