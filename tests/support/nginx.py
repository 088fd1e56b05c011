"""nginx for the tests: found (or installed with apt-get when missing and we are root), and run
in front of messenger nodes with the config ``scripts/cluster`` renders (its ``NginxConfig``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.debian import apt_install
from tests.support.processes import cluster_script, free_port, stop, wait_for_port

NGINX_PATH = os.pathsep.join(["/usr/sbin", "/usr/local/sbin", os.environ.get("PATH", "")])


def ensure_nginx() -> str | None:
    """The nginx binary; installed with apt-get first when missing and we are root."""
    found = shutil.which("nginx", path=NGINX_PATH)
    if found is None and apt_install(["nginx"], "nginx is"):
        found = shutil.which("nginx", path=NGINX_PATH)
    return found


def nginx_or_skip() -> str:
    nginx = ensure_nginx()
    if nginx is None:
        pytest.skip("nginx is not installed and could not be installed here"
                    " (apt-get install nginx needs root and a package mirror)")
    return nginx


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
