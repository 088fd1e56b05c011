"""A real S3 API on loopback: moto's server (``python -m moto.server``) in a helper process."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import free_port, stop, wait_for_port

#: Credentials moto accepts (it does not check them; S3 signatures are not verified either).
ACCESS_KEY_ID = "moto-test-key"
SECRET_ACCESS_KEY = "moto-test-secret"
REGION = "us-east-1"


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port, self.proc, timeout=60)
        except BaseException:
            stop(self.proc)
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, bucket: str) -> dict[str, str]:
        """Messenger settings that put attachments in ``bucket`` on this server."""
        return {
            "S3_ENDPOINT": self.url,
            "S3_REGION": REGION,
            "S3_BUCKET": bucket,
            "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "S3_CREATE_BUCKET": "true",
        }

    def close(self) -> None:
        stop(self.proc)
