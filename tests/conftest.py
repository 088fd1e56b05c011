"""Shared fixtures: real servers on loopback (mongoeco wire server, the messenger itself)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from config.settings import UNLIMITED_AUTH
from messenger.store import Store
from tests.support.processes import MessengerServer, MongoecoServer
from tests.support.redis_server import RedisServer
from tests.support.stores import on_the_same_database, open_adapter

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"

#: The suite registers and logs in hundreds of users from 127.0.0.1, so servers under test get
#: auth rate limits far above that; tests/test_api_auth_limits.py runs its own with low ones.
RELAXED_AUTH_LIMITS = dict(UNLIMITED_AUTH)


@pytest.fixture(scope="session")
def mongoeco() -> Iterator[MongoecoServer]:
    """One mongoeco wire server for the session; each user of it takes its own database."""
    server = MongoecoServer()
    yield server
    server.close()


def unique_db_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def server_env(backend: str, request: pytest.FixtureRequest, tmp_dir: str) -> dict[str, str]:
    env = {
        "ENV": "test",
        "JWT_SECRET": TEST_SECRET,
        "BCRYPT_ROUNDS": "4",
        "LOG_LEVEL": "WARNING",
        "MESSENGER_DATA_DIR": tmp_dir,
        **RELAXED_AUTH_LIMITS,
    }
    if backend == "mongo":
        mongo: MongoecoServer = request.getfixturevalue("mongoeco")
        env["MONGO_URL"] = mongo.url
        env["MONGO_DB"] = unique_db_name(request.module.__name__.rsplit(".", 1)[-1])
        # One mongoeco process serves the whole suite on a 2-core machine: under load it can
        # miss the driver's heartbeat deadline (MONGO_TIMEOUT_MS), and the driver then cancels
        # the operations in flight. The failure tests (test_realtime_failures.py) set their own.
        env["MONGO_TIMEOUT_MS"] = "20000"
    return env


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    """The messenger running as its own process, on SQLite or on MongoDB (mongoeco)."""
    tmp_dir = str(tmp_path_factory.mktemp(f"data-{request.param}"))
    proc = MessengerServer(server_env(request.param, request, tmp_dir)).start()
    proc.backend = request.param
    yield proc
    proc.stop()


@pytest.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated store adapter for the contract tests, on SQLite and on MongoDB (mongoeco)."""
    adapter = open_adapter(request.param, request, tmp_path)
    await adapter.migrate()
    yield adapter
    await adapter.close()


@pytest.fixture
async def twin(store: Store) -> AsyncIterator[Store]:
    """Another store object on the ``store`` fixture's database: another process, in effect."""
    other = on_the_same_database(store)
    await other.migrate()
    yield other
    await other.close()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One valkey-server (or redis-server) for the module (tests/support/redis_server.py); each
    test keeps to its own key and channel prefix on it."""
    srv = RedisServer()
    yield srv
    srv.close()


#: The last lines of a server's log a failed test's report shows.
SERVER_LOG_LINES = 200


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """A failed test's report shows the log of each messenger it used (its fixtures'), so a
    failure in CI can be read without running it again."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name, value in funcargs.items():
            log = getattr(value, "log", None) if isinstance(value, MessengerServer) else None
            if log:
                report.sections.append((f"messenger log ({name}, last {SERVER_LOG_LINES} lines)",
                                        "".join(log[-SERVER_LOG_LINES:])))
    return report
