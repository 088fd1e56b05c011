"""Property-based requests generated from openapi.json (schemathesis) against the running server.

Thousands of valid and invalid requests across every operation must never produce a 5xx, and
every response must match the documented status codes, content type and schemas.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import RELAXED_AUTH_LIMITS, TEST_SECRET
from tests.support.api import Api
from tests.support.processes import ROOT, MessengerServer

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
])


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MessengerServer]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    server = MessengerServer({"ENV": "test", "JWT_SECRET": TEST_SECRET, "BCRYPT_ROUNDS": "4",
                              "LOG_LEVEL": "WARNING", "MESSENGER_DATA_DIR": str(data_dir),
                              **RELAXED_AUTH_LIMITS})
    yield server.start()
    server.stop()


@pytest.mark.timeout(300)
async def test_generated_requests_keep_the_contract(
    embedded_server: MessengerServer, tmp_path: Path
) -> None:
    account = await Api(embedded_server.base_url).register(name="Fuzz")
    cli = Path(sys.executable).with_name("schemathesis")
    command = [
        str(cli) if cli.exists() else shutil.which("schemathesis") or "schemathesis",
        "run", str(ROOT / "openapi.json"),
        "--url", embedded_server.base_url,
        "--header", f"Authorization: Bearer {account.access_token}",
        "--checks", CHECKS,
        "--max-examples", "40",
        "--seed", "20261126",
        "--no-color",
        # a long poll waits up to its timeout when nothing happens: tested in test_realtime_poll
        "--exclude-path", "/api/events",
    ]
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path,  # its caches stay out of the checkout
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output = (await asyncio.wait_for(proc.communicate(), 280))[0].decode()
    assert proc.returncode == 0, output[-8000:]
    spec = orjson.loads((ROOT / "openapi.json").read_bytes())
    operations = sum(len(methods) for path, methods in spec["paths"].items()
                     if path != "/api/events")
    assert f"Tested: {operations}" in output, output[-2000:]  # every operation was exercised
    assert "passed" in output, output[-2000:]
