"""The Docker engine, the images and the running stack, once for tests/docker.

Everything runs in one pytest process (one file, `--dist loadfile`): the engine and the images
are made once, the stack is brought up once and the tests then act on it in order, each
leaving it running and healthy for the next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker.engine import DockerEngine
from tests.docker.images import Images, build_all
from tests.docker.stack import HA_NETWORK, Stack


@pytest.fixture(scope="session")
def engine() -> Iterator[DockerEngine]:
    engine = DockerEngine()
    try:
        yield engine.start()
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def images(engine: DockerEngine) -> Images:
    return build_all(engine)


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, object]]:
    """What the run measured, printed at its end (docs/deployment.md quotes them)."""
    collected: dict[str, object] = {"started": time.monotonic()}
    yield collected
    collected["seconds in all"] = round(time.monotonic() - float(collected.pop("started")))  # type: ignore[arg-type]
    print("\nFIGURES docker compose stack:")
    for name, value in collected.items():
        print(f"  {name}: {value}")


@pytest.fixture(scope="session")
def stack(
    engine: DockerEngine, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(engine, images, Path(tmp_path_factory.mktemp("compose")))
    engine.docker("network", "create", HA_NETWORK)
    stop = threading.Event()
    sampler = threading.Thread(target=stack.sample_memory, args=(stop,), daemon=True)
    sampler.start()
    try:
        yield stack
    finally:
        stop.set()
        sampler.join(60)
        print(stack.logs(tail=30))
        for down in (lambda: stack.compose("--profile", "monitoring", "down", "-v", "-t", "5"),
                     lambda: stack.ha("down", "-v", "-t", "2")):  # fmt: skip
            try:
                down()
            except AssertionError as exc:
                print(exc)
        engine.docker("network", "rm", HA_NETWORK, check=False)
