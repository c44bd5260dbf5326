"""A real S3-compatible server for tests: moto in server mode on 127.0.0.1.

The server runs as its own process on a free port, so clients in the test process and
in Dask worker processes talk to it over HTTP exactly as they would to any object store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

__all__ = ["S3Server", "s3_bucket", "s3_server", "start_s3_server"]

KEY = "testing-key"
SECRET = "testing-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options that reach this server without any environment variable."""
        return {
            "key": KEY,
            "secret": SECRET,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": REGION},
        }

    @property
    def env(self) -> dict[str, str]:
        """The usual AWS environment variables pointing at this server."""
        return {
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
        }

    def make_bucket(self, name: str | None = None) -> str:
        import s3fs

        name = name or f"bucket-{uuid.uuid4().hex[:12]}"
        # us-east-1 buckets take no location constraint; s3fs would send the region
        opts = {k: v for k, v in self.storage_options.items() if k != "client_kwargs"}
        s3fs.S3FileSystem(**opts).mkdir(name)
        return name


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_s3_server(timeout: float = 30.0) -> S3Server:
    """Start ``moto.server`` on 127.0.0.1 and wait until it answers."""
    last: Exception | None = None
    for _attempt in range(3):  # the free port may be taken between probe and bind
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "MOTO_CALL_RESET_API": "false"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                return S3Server(endpoint, proc)
            except (urllib.error.URLError, OSError) as exc:
                last = exc
                time.sleep(0.1)
        stop_s3_server(proc)
    raise RuntimeError(f"moto server did not start: {last}")


def stop_s3_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = start_s3_server()
    try:
        yield server
    finally:
        stop_s3_server(server.process)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket per test."""
    return s3_server.make_bucket()
