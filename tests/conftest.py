"""Shared fixtures. TF_USE_LEGACY_KERAS must be set before anything imports TensorFlow."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
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
