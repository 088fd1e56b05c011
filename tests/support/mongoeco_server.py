"""Run a mongoeco wire-protocol server (an in-memory MongoDB stand-in) on a loopback port.

Started by the tests in a helper process: ``python tests/support/mongoeco_server.py PORT [PATH]``
(with PATH, data lives in that SQLite file and survives a restart). Prints ``ready <port>``
once it accepts connections.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from mongoeco.engines import MemoryEngine, SQLiteEngine
from mongoeco.wire import AsyncMongoEcoProxyServer


async def serve(port: int, path: str | None) -> None:
    engine = SQLiteEngine(path) if path else MemoryEngine()
    server = AsyncMongoEcoProxyServer(engine=engine, host="127.0.0.1", port=port)
    address = await server.start()
    print(f"ready {address.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                      sys.argv[2] if len(sys.argv) > 2 else None))
