from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.reliability.redis_server import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: run scripts/setup.sh")
        pytest.skip("no redis-server: run scripts/setup.sh")
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url
