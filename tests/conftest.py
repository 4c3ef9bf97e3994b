"""Shared test fixtures: a hermetic environment for every test, and the path to the real Psyche fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import PSYCHE_FIXTURES

# Variables the run-manager reads; none of the developer's own may leak into a test.
_LEAKY_PREFIXES = ("RPC", "WS_RPC", "RUN_MANAGER_")
_LEAKY_NAMES = {
    "RUN_ID",
    "AUTHORIZER",
    "WALLET_PATH",
    "WALLET_PRIVATE_KEY_PATH",
    "RAW_WALLET_PRIVATE_KEY",
    "CLIENT_VERSION",
    "DATA_PARALLELISM",
    "TENSOR_PARALLELISM",
    "MICRO_BATCH_SIZE",
    "PARALLELISM_AUTO",
    "SCRATCH_DIR",
    "NVIDIA_DRIVER_CAPABILITIES",
    "ADDRESS",
    "JOIN_AUTHORITY",
    "RUN_DOWN_SERVICE_URL",
    "OUTPUT_DIR",
    "EXPIRES_IN_SECONDS",
}
_KEEP = {"RUN_MANAGER_TEST_RPC", "RUN_MANAGER_TEST_REGISTRY"}


@pytest.fixture(autouse=True)
def isolation(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No colour, fixed width, a temporary HOME, and no RPC/wallet variables from the developer's shell."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    for name in list(os.environ):
        if name in _KEEP:
            continue
        if name in _LEAKY_NAMES or name.startswith(_LEAKY_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    yield home


@pytest.fixture
def psyche_fixtures() -> Path:
    """tests/fixtures/psyche: the real upstream files, part of every clone (never skipped)."""
    return PSYCHE_FIXTURES
