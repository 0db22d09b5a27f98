"""One scan of the installed distributions while a command imports, where the Google Cloud clients make four.

google-api-core 2.28 and later check the Python version as each Google client package is
imported, and to name the package in their warning they call
``importlib.metadata.packages_distributions()``, which reads the metadata of every installed
distribution: about 0.06 s a call in this project's environment, and four calls when the download
job imports Beam (google-api-core, BigQuery, BigQuery Storage, Pub/Sub). Later google-api-core
releases scan once (googleapis/python-api-core#878), but they need protobuf 4.25.8 or later and
this stack holds protobuf at 3.20 (setup.py). So while ``imat`` imports a command in its own
process, the scan is made once and its answer reused; the warnings and checks are unchanged. The
installed distributions cannot change during those imports, and the function is restored after.
"""

import contextlib
import functools
import importlib.metadata
from typing import Dict, Iterator, List


@contextlib.contextmanager
def scanned_once() -> Iterator[None]:
    """Within the block, ``importlib.metadata.packages_distributions()`` scans on its first call only.

    Each call still returns its own copy (callers may change what they get). The original function
    is back in place afterwards, also when the block raises.
    """
    original = importlib.metadata.packages_distributions
    scan = functools.lru_cache(maxsize=1)(original)

    def packages_distributions() -> Dict[str, List[str]]:
        return {name: list(dists) for name, dists in scan().items()}

    importlib.metadata.packages_distributions = packages_distributions
    try:
        yield
    finally:
        importlib.metadata.packages_distributions = original
