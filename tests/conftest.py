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
