"""nginx for the tests: found (or installed with apt-get when missing and we are root), and run
in front of messenger nodes with the config ``scripts/cluster`` renders (its ``NginxConfig``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.debian import debian_binary, debian_binary_or_skip
from tests.support.processes import cluster_script, free_port, stop, wait_for_port

NGINX_DIRECTORIES = ["/usr/sbin", "/usr/local/sbin"]


def ensure_nginx() -> str | None:
    """The nginx binary; installed with apt-get first when missing and we are root."""
    return debian_binary("nginx", "nginx", NGINX_DIRECTORIES)


def nginx_or_skip() -> str:
    return debian_binary_or_skip("nginx", "nginx", NGINX_DIRECTORIES)


class Nginx:
    """One nginx in the foreground on a free loopback port, round robin over ``upstreams``."""

    def __init__(self, upstreams: list[str], prefix: Path) -> None:
        self.port = free_port()
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(cluster_script().NginxConfig(
            listen=f"127.0.0.1:{self.port}", upstreams=tuple(upstreams), prefix=prefix,
            read_timeout=90).render())
        self.proc = subprocess.Popen(
            [nginx_or_skip(), "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")])
        wait_for_port(self.port, self.proc)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.proc)
