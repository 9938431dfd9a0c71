"""A real redis-server for the serving tests, started once per test session.

Import the fixtures into a test module (``from tests.redis_server import
redis_server, redis_url``). Without ``redis-server`` on PATH the tests skip,
except under ``CI=true``, where they fail: CI installs it (.ci/run).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "s3cret-pw"
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RedisServer:
    """A running server: where it listens and how to reach it."""

    host: str
    port: int
    password: str

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/{db}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must install it (see .ci/run)")
    pytest.skip(reason)


def start(folder: Path) -> tuple[subprocess.Popen[bytes], RedisServer]:
    """Start redis-server in ``folder`` on a free loopback port, with a password and no disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server is not on PATH")
    port = _free_port()
    args = [
        str(binary),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        PASSWORD,
        "--dir",
        str(folder),
    ]
    process = subprocess.Popen(
        args, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = RedisServer("127.0.0.1", port, PASSWORD)
    import redis

    client = redis.Redis(host=server.host, port=port, password=PASSWORD, socket_timeout=1)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"redis-server did not answer PING on port {port}")
        time.sleep(0.05)
    client.close()
    return process, server


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session, stopped at its end."""
    process, server = start(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        stop(process)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an emptied database of the session's server (with its password)."""
    import redis

    client = redis.Redis(
        host=redis_server.host, port=redis_server.port, password=redis_server.password
    )
    client.flushdb()
    client.close()
    return redis_server.url()
