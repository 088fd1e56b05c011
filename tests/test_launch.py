"""How the messenger is launched (docs/DEPLOYMENT.md): ``scripts/cluster``, the Procfile under
honcho, and the docker-compose stack (no Docker engine here: its files are checked instead).

* ``scripts/cluster 2`` starts from the repo with its data dir in a temporary directory: every
  URL it prints answers ``/api/readyz`` with 200, through nginx too when nginx is installed
  (then requests through it reach both nodes, and a WebSocket opens through it); SIGINT stops
  everything it started — no process it started is left, its ports are free — and it exits 0.
  With ``--no-nginx`` it says so, prints the node's URL only, and stops on SIGTERM the same
  way. A taken port stops it before it starts anything.
* ``honcho start`` with ``PORT`` set keeps running (no process type exits), serves readyz on
  that port, and on SIGTERM stops its web process cleanly (honcho itself exits 143, 128 +
  SIGTERM, as it always does when stopped by a signal).
* The nginx configs — the one ``scripts/cluster`` renders and ``deploy/nginx.conf`` of
  docker-compose — pass ``nginx -t`` and proxy WebSockets with no stickiness; the compose file
  has 2+ web replicas behind nginx with mongo and redis; the Dockerfile runs as a non-root user
  with a volume and a readyz HEALTHCHECK.

nginx is the Debian package: ``ensure_nginx`` installs it with apt-get when it is missing and
the tests run as root (as ``.ci/run`` does); the tests that need it are skipped, saying why,
only when that is impossible.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from config import load_settings
from tests.support.api import Api
from tests.support.nginx import ensure_nginx, nginx_or_skip
from tests.support.processes import cluster_script, free_port
from tests.support.ws import WsClient

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
START_SECONDS = 90.0
STOP_SECONDS = 30.0


# -- helpers ----------------------------------------------------------------------------------
@functools.cache
def nginx_test(nginx: str, conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    prefix.mkdir(parents=True, exist_ok=True)
    return subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(conf),
                           "-e", str(prefix / "error.log")],
                          capture_output=True, text=True, timeout=30)


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports that are free now."""
    for _ in range(100):
        base = free_port()
        if base + count <= 65535 and all(port_free(base + i) for i in range(count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.05)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


class Launched:
    """A launcher process (cluster, honcho) with its output read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, pattern: str, timeout: float = START_SECONDS) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f}s:\n"
                                     + "".join(self.lines)) from None
            if line is None:
                raise AssertionError(f"exited with {self.proc.wait()} before {pattern!r}:\n"
                                     + "".join(self.lines))
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def output(self) -> str:
        """Everything printed so far (the rest of the queue drained)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return "".join(self.lines)
            if line is not None:
                self.lines.append(line)

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {STOP_SECONDS:.0f}s after {sig!r}:\n"
                                 + self.output()) from None

    def kill_all(self, pids: set[int]) -> None:
        """Clean up after a failed test: the launcher and whatever it left."""
        for pid in [self.proc.pid, *pids]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()


def launch_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MESSENGER_", "MONGO_", "REDIS_", "PORT", "HOST"))}
    env.update(PATH=os.pathsep.join([str(VENV_BIN), env.get("PATH", "/usr/bin:/bin")]),
               ENV="local", LOG_LEVEL="INFO", MESSENGER_DATA_DIR=str(tmp_path / "unused"),
               BCRYPT_ROUNDS="4")
    return env


@pytest.fixture
def cleanup() -> Iterator[list[tuple[Launched, set[int]]]]:
    started: list[tuple[Launched, set[int]]] = []
    yield started
    for launched, pids in started:
        if launched.proc.poll() is None or any(alive(pid) for pid in pids):
            launched.kill_all(pids)


# -- scripts/cluster --------------------------------------------------------------------------
@pytest.mark.timeout(180)
async def test_cluster_of_two_serves_every_url_and_stops_everything_on_sigint(
    tmp_path: Path, cleanup: list[tuple[Launched, set[int]]],
) -> None:
    nginx = ensure_nginx()
    base = consecutive_free_ports(2)
    front = free_port()
    data = tmp_path / "cluster"
    launched = Launched([str(ROOT / "scripts" / "cluster"), "2", "--base-port", str(base),
                         "--data-dir", str(data), "--nginx-port", str(front)],
                        launch_env(tmp_path))
    pids: set[int] = set()
    cleanup.append((launched, pids))
    launched.wait_for_line(r"ready; Ctrl-C stops everything")
    pids |= descendants(launched.proc.pid)
    out = launched.output()
    urls = re.findall(r"^cluster \| \S+\s+(http://\S+)", out, re.MULTILINE)
    nodes = [f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"]
    redis_port = int(re.search(r"Redis at redis://127\.0\.0\.1:(\d+)/0", out).group(1))
    if nginx:
        assert urls == [f"http://127.0.0.1:{front}", *nodes], out
    else:
        assert urls == nodes, out
        assert "nginx is not installed" in out
    for url in urls:
        assert get(url + "/api/readyz") == 200, url
    assert (data / "messenger.sqlite3").exists()  # one file, the nodes' shared store

    if nginx:  # round robin: requests through nginx reach both nodes
        probe = uuid.uuid4().hex
        for _ in range(6):
            assert get(f"{urls[0]}/api/healthz?probe={probe}") == 200
        for name in ("node1", "node2"):
            wait_until(lambda name=name: re.search(
                rf"^\s*{name} \| .*GET /api/healthz\?probe={probe}", launched.output(),
                re.MULTILINE), f"{name} served a request through nginx")
        assert len(pids) >= 5, pids  # redis, 2 nodes, nginx master and worker(s)
        # a WebSocket through nginx: the upgrade is passed on, the session says ready
        account = await Api(urls[0]).register(name="Through nginx")
        ws = await WsClient.connect(urls[0], account.access_token)
        ws.conn.close()

    assert launched.stop(signal.SIGINT) == 0, launched.output()
    assert not [pid for pid in pids if alive(pid)], launched.output()
    for port in [*range(base, base + 2), redis_port, *([front] if nginx else [])]:
        assert port_free(port), f"port {port} still taken"
    assert "cluster | stopped" in launched.output()


@pytest.mark.timeout(120)
def test_cluster_without_nginx_says_so_and_stops_on_sigterm(
    tmp_path: Path, cleanup: list[tuple[Launched, set[int]]],
) -> None:
    base = consecutive_free_ports(1)
    launched = Launched([sys.executable, str(ROOT / "scripts" / "cluster"), "1", "--no-nginx",
                         "--base-port", str(base), "--data-dir", str(tmp_path / "c")],
                        launch_env(tmp_path))
    pids: set[int] = set()
    cleanup.append((launched, pids))
    launched.wait_for_line(r"ready; Ctrl-C stops everything")
    pids |= descendants(launched.proc.pid)
    out = launched.output()
    assert "nginx not started (--no-nginx): no front URL" in out
    assert re.findall(r"^cluster \| \S+\s+(http://\S+)", out, re.MULTILINE) == [
        f"http://127.0.0.1:{base}"]
    assert get(f"http://127.0.0.1:{base}/api/readyz") == 200
    assert launched.stop(signal.SIGTERM) == 0, launched.output()
    assert not [pid for pid in pids if alive(pid)]
    assert port_free(base)


def test_cluster_refuses_a_taken_port_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "cluster"), "1", "--no-nginx",
             "--base-port", str(port), "--data-dir", str(tmp_path / "c")],
            cwd=ROOT, env=launch_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"port {port} (node1) is not free" in result.stderr
    assert not (tmp_path / "c" / "messenger.sqlite3").exists()


def test_cluster_plan_ports_env_and_timeouts() -> None:
    cluster = cluster_script()
    plan = cluster.ClusterPlan(3, 9001, 9000, Path("/srv/c"), use_nginx=True)
    assert [(n.name, n.url) for n in plan.nodes] == [
        ("node1", "http://127.0.0.1:9001"), ("node2", "http://127.0.0.1:9002"),
        ("node3", "http://127.0.0.1:9003")]
    assert plan.front_url == "http://127.0.0.1:9000"
    env = plan.node_env({"TRUSTED_PROXIES": "10.0.0.0/8", "PORT": "1", "HOST": "0.0.0.0"},
                        "redis://127.0.0.1:7000/0")
    assert env["TRUSTED_PROXIES"] == "10.0.0.0/8,127.0.0.1"
    assert env["REDIS_URL"] == "redis://127.0.0.1:7000/0"
    assert env["MESSENGER_DATA_DIR"] == "/srv/c"
    assert env["PUBLIC_BASE_URL"] == "http://127.0.0.1:9000"
    assert "PORT" not in env and "HOST" not in env
    assert plan.node_env({"PUBLIC_BASE_URL": "https://chat.example"}, "redis://x")[
        "PUBLIC_BASE_URL"] == "https://chat.example"
    alone = cluster.ClusterPlan(2, 9001, 9001, Path("/srv/c"), use_nginx=False)
    assert "TRUSTED_PROXIES" not in alone.node_env({}, "redis://x")
    assert alone.front_url == "http://127.0.0.1:9001"

    defaults = load_settings({})
    wait = max(defaults.poll_timeout_max, defaults.ws_ping_interval + defaults.ws_ping_timeout)
    assert plan.read_timeout({}) > wait
    assert plan.read_timeout({"POLL_TIMEOUT_MAX_SECONDS": "300"}) > 300
    assert plan.max_body_bytes({}) >= defaults.upload_max_bytes

    for bad in ((0, 9001, 9000), (65, 9001, 9000), (2, 65535, 9000), (3, 9001, 9002)):
        with pytest.raises(cluster.ClusterError):
            cluster.ClusterPlan(*bad, Path("/srv/c"), use_nginx=True)


def test_the_rendered_cluster_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = nginx_or_skip()
    cluster = cluster_script()
    upstreams = ("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
    text = cluster.NginxConfig(listen="127.0.0.1:9000", upstreams=upstreams, prefix=tmp_path,
                               read_timeout=90).render()
    for address in upstreams:
        assert f"server {address} " in text
    assert_proxies_websockets_without_stickiness(text)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / sub).mkdir(parents=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    result = nginx_test(nginx, conf, tmp_path)
    assert result.returncode == 0, result.stderr


def assert_proxies_websockets_without_stickiness(config: str) -> None:
    text = "\n".join(line.split("#", 1)[0] for line in config.splitlines())  # no comments
    assert re.search(r"proxy_http_version 1\.1;", text)
    assert re.search(r"proxy_set_header Upgrade \$http_upgrade;", text)
    assert re.search(r"proxy_set_header Connection \$connection_upgrade;", text)
    assert re.search(r"map \$http_upgrade \$connection_upgrade", text)
    assert re.search(r"proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;", text)
    assert re.search(r"proxy_set_header Host \$http_host;", text)
    for sticky in ("ip_hash", "hash ", "sticky", "least_conn"):
        assert sticky not in text, sticky
    defaults = load_settings({})
    [timeout] = re.findall(r"proxy_read_timeout (\d+)s;", text)
    assert int(timeout) > max(defaults.poll_timeout_max,
                              defaults.ws_ping_interval + defaults.ws_ping_timeout)


# -- Procfile under honcho --------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_honcho_start_serves_readyz_and_stops_on_sigterm(
    tmp_path: Path, cleanup: list[tuple[Launched, set[int]]],
) -> None:
    port = free_port()
    env = {**launch_env(tmp_path), "PORT": str(port), "MESSENGER_DATA_DIR": str(tmp_path)}
    launched = Launched([str(VENV_BIN / "honcho"), "start"], env)
    pids: set[int] = set()
    cleanup.append((launched, pids))
    wait_until(lambda: launched.proc.poll() is not None or port_answers(port),
               f"readyz on port {port}", START_SECONDS)
    assert launched.proc.poll() is None, launched.output()
    pids |= descendants(launched.proc.pid)
    assert get(f"http://127.0.0.1:{port}/api/readyz") == 200
    assert "stopped" not in launched.output()  # no process type exited and took the rest down
    assert launched.stop(signal.SIGTERM) == 128 + signal.SIGTERM, launched.output()
    assert "web.1 stopped (rc=0)" in launched.output()
    assert not [pid for pid in pids if alive(pid)]
    assert port_free(port)


def port_answers(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/api/readyz") == 200
    except OSError:
        return False


# -- docker-compose.yml, deploy/nginx.conf, Dockerfile ----------------------------------------
def test_compose_runs_two_web_replicas_behind_nginx_with_mongo_and_redis() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"nginx", "web", "mongo", "redis", "minio", "mailpit"} <= set(services)
    web, nginx = services["web"], services["nginx"]
    assert web["deploy"]["replicas"] >= 2
    assert "ports" not in web and "container_name" not in web  # replicas: only nginx publishes
    assert any(str(p).endswith(":8000") for p in nginx["ports"])
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["depends_on"]["web"]["condition"] == "service_healthy"
    env = web["environment"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["MONGO_URL"].startswith("mongodb://mongo:")
    for name in ("JWT_SECRET", "PUBLIC_BASE_URL", "S3_ENDPOINT", "SMTP_HOST"):
        assert env[name], name
    subnet = ipaddress.ip_network(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    nginx_address = ipaddress.ip_address(nginx["networks"]["default"]["ipv4_address"])
    assert nginx_address in subnet
    assert env["TRUSTED_PROXIES"] == str(nginx_address)
    assert {"mongo", "redis"} <= set(web["depends_on"])


def test_deploy_nginx_conf_uses_docker_dns_and_passes_nginx_t(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    assert_proxies_websockets_without_stickiness(text)
    assert re.search(r"resolver 127\.0\.0\.11 valid=\d+s", text)  # every replica, found anew
    assert re.search(r"set \$\w+ web:8000;", text) and "proxy_pass http://$" in text
    assert re.search(r"listen 8000;", text)
    result = nginx_test(nginx_or_skip(), ROOT / "deploy" / "nginx.conf", tmp_path)
    assert result.returncode == 0, result.stderr


def test_dockerfile_runs_unprivileged_with_a_data_volume_and_a_readyz_healthcheck() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line.split()[0] for line in lines if line and not line.startswith("#")
                    and line.split()[0].isupper()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    assert any(line.startswith("VOLUME") and "/data" in line for line in lines)
    assert "MESSENGER_DATA_DIR=/data" in (ROOT / "Dockerfile").read_text()
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"HEALTHCHECK .*\n?.*CMD .*/api/readyz", text)
    assert re.search(r"chown messenger:messenger /data", text)
    # the volume is declared after /data is given to the user, the user set before CMD
    assert instructions.index("VOLUME") > instructions.index("RUN")
    assert instructions.index("USER") < instructions.index("CMD")
    assert re.search(r'^CMD \["python", "-m", "messenger"\]', text, re.MULTILINE)  # PID 1
