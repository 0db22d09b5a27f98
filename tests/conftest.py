"""Shared fixtures. TF_USE_LEGACY_KERAS must be set before anything imports TensorFlow."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tests.fault_server import FaultServer  # noqa: E402


@pytest.fixture
def fault_server():
    server = FaultServer()
    with server.running():
        yield server
