"""Test-wide settings: offline hub, one thread per process (2-core machines, environment.md)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    """`chaos`-marked tests (the long fault-injection and fuzz runs) run only when asked for
    with `-m chaos` (`make chaos`); `make test` runs their CI-sized versions."""
    import pytest

    if "chaos" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long chaos run: `make chaos` (pytest -m chaos) runs it")
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(skip)
