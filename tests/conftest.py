"""Shared fixtures. Keras 2 is chosen before anything imports TensorFlow."""

import os

import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from tests.fault_server import FaultServer


@pytest.fixture
def fault_server():
    server = FaultServer()
    with server.running():
        yield server


@pytest.fixture
def one_faiss_thread():
    """FAISS and BLAS on one thread: the test indexes are tiny, and on a busy machine every OpenMP
    barrier waits for a descheduled thread (a 3,000-vector IVF-PQ build took minutes instead of seconds)."""
    import faiss
    from threadpoolctl import threadpool_limits

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    faiss.omp_set_num_threads(threads)


def pytest_collection_modifyitems(items):
    """Files with a slow test run first, each file's tests in their own order.

    Under ``make test`` each file runs whole in one of the worker processes, taken in this order
    (``--no-loadscope-reorder``): the end-to-end files, minutes each, start at once, and the many
    short files fill both workers at the end instead of one long file running alone.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
