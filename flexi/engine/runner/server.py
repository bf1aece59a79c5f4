"""The runner's socket side: read commands, hand them to the engine thread, stream events back."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from flexi.engine.runner.batch_engine import BatchEngine
from flexi.engine.runner.protocol import FINAL, MAX_LINE, Cancel, Error, Event, ProtocolError, decode_request, encode, frame_id

log = logging.getLogger("flexi.runner")


class RunnerServer:
    """Multiplexes requests from any number of connections onto one BatchEngine.

    Each connection has its own id space; ids are remapped to engine-wide ids.
    A closed connection cancels all of its requests.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.engine: BatchEngine | None = None
        self._ids = itertools.count(1)
        self._routes: dict[int, tuple[asyncio.StreamWriter, int]] = {}

    def _emit_threadsafe(self, events: list[tuple[int, Event]]) -> None:
        self.loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: list[tuple[int, Event]]) -> None:
        """Route one step's events to their connections: one write per connection, not one per event."""
        frames: dict[asyncio.StreamWriter, list[bytes]] = {}
        for engine_id, event in events:
            route = self._routes.get(engine_id)
            if route is None:
                continue
            writer, client_id = route
            if isinstance(event, FINAL):
                del self._routes[engine_id]
            if writer.is_closing():
                continue
            frames.setdefault(writer, []).append(encode(client_id, event))
        for writer, out in frames.items():
            writer.write(b"".join(out))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mine: dict[int, int] = {}  # client id → engine id
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    client_id, request = decode_request(line)
                except ProtocolError as exc:  # a server bug: answer it if the id is readable, never guess
                    log.warning("%s", exc)
                    bad_id = frame_id(line)
                    if bad_id is not None:
                        writer.write(encode(bad_id, Error(f"the runner could not read the request ({exc})", 500)))
                    continue
                assert self.engine is not None
                if isinstance(request, Cancel):
                    engine_id = mine.get(client_id)
                    if engine_id is not None:
                        self.engine.submit(engine_id, request)
                    continue
                engine_id = next(self._ids)
                mine[client_id] = engine_id
                self._routes[engine_id] = (writer, client_id)
                self.engine.submit(engine_id, request)
                if len(mine) > 10_000:  # forget finished ids
                    live = set(self._routes)
                    mine = {c: e for c, e in mine.items() if e in live}
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):  # ValueError: a line over MAX_LINE
            pass
        finally:
            for engine_id in mine.values():
                if engine_id in self._routes and self.engine is not None:
                    self.engine.submit(engine_id, Cancel())
            writer.close()


async def serve(socket_path: str, engine_factory: Any, ready: Any) -> None:
    """Build and run the engine on ONE dedicated thread, then accept connections.

    Everything that touches the llama.cpp context — creation, warm-up, every decode —
    happens on that thread: ggml's OpenMP pool is per calling thread, and a second pool
    left spinning from another thread halves decode speed on a 2-core machine.
    """
    loop = asyncio.get_running_loop()
    runner = RunnerServer()
    built: asyncio.Future[None] = loop.create_future()

    def engine_main() -> None:
        try:
            runner.engine = engine_factory(runner._emit_threadsafe)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            loop.call_soon_threadsafe(built.set_exception, exc)
            return
        loop.call_soon_threadsafe(built.set_result, None)
        runner.engine.run()

    engine_thread = loop.run_in_executor(None, engine_main)
    await built
    server = await asyncio.start_unix_server(runner.handle, path=socket_path, limit=MAX_LINE)
    ready()
    async with server:
        await engine_thread
