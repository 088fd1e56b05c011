"""Start and stop the real servers the tests talk to (helper processes on loopback ports)."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until ``proc`` answers ``GET /api/healthz`` with 200 on ``port``; fail if it exits
    (with its stderr, when piped) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            said = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"exited with {proc.returncode}: {said}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/healthz",
                                        timeout=1) as resp:
                assert resp.status == 200
                return
        except OSError:
            assert time.monotonic() < deadline, f"nothing serves on port {port}"
            time.sleep(0.05)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


class MongoecoServer:
    """A mongoeco wire server in a helper process; ``url(db)`` names a database on it."""

    def __init__(self, path: str | None = None) -> None:
        self.port = free_port()
        self.path = path  # a SQLite file: data survives stop() + start()
        self.start()

    def start(self) -> None:
        args = [sys.executable, str(ROOT / "tests/support/mongoeco_server.py"), str(self.port)]
        self.proc = subprocess.Popen(
            args + ([self.path] if self.path else []), stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready"):
            stop(self.proc)
            raise RuntimeError(f"mongoeco did not start: {line!r}")

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def close(self) -> None:
        stop(self.proc)


class MessengerServer:
    """``python -m messenger`` in a helper process, serving HTTP on a loopback port."""

    def __init__(self, env: Mapping[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = dict(env)
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MessengerServer:
        # ENV_FILE=/dev/null: a developer's own ./.env never reaches a test server
        env = {**os.environ, "ENV_FILE": "/dev/null", **self.env, "HOST": "127.0.0.1",
               "PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "messenger"], cwd=ROOT, env=env, stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"messenger exited with {self.proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(self.base_url + "/api/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        self._drain_stderr()
                        return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("messenger did not become healthy")

    def _drain_stderr(self) -> None:
        # Keep reading the server's log so a full pipe never blocks it; keep it for failures.
        import threading

        self.log: list[str] = []
        stream = self.proc.stderr if self.proc else None

        def pump() -> None:
            for line in stream or ():
                self.log.append(line)

        threading.Thread(target=pump, daemon=True).start()

    def stop(self) -> int:
        return stop(self.proc) if self.proc else 0


@functools.cache
def cluster_script() -> ModuleType:
    """``scripts/cluster`` as a module (it has no .py suffix), for its plain classes."""
    loader = importlib.machinery.SourceFileLoader("cluster_script", str(ROOT / "scripts/cluster"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module
