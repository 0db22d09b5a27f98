"""Garbage collection in a process that runs one command: the objects its imports make are set aside.

A command's imports make hundreds of thousands of objects that live as long as the process
(Beam, the Google Cloud clients, pandas: about 240,000 for the download job). CPython's cycle
collector walks all of them in every full collection: while the imports run, while the command
works, and again when the interpreter exits. So a command's own process imports with the
collector off, collects once, and freezes what is left (``gc.freeze``: later collections skip
those objects); garbage made after that is collected as usual. The download job starts and ends
about 0.6 s sooner (docs/benchmarks.md, "Download: start-up and exit").

``imat`` sets aside what it imports before running the command: Beam (through the error types it
catches) and the command's module with its module-level imports. A command that imports inside
its function (TensorFlow for ``imat run``) makes those objects afterwards, with the collector on.

Only for a process's own command line (``python -m cli.main``, the ``imat`` script, ``python -m
components.download.job``): a program that calls a command in-process keeps its collector as it is.
"""

import contextlib
import gc
from typing import Iterator


def set_aside_import_objects() -> None:
    """Collects the garbage there is now, then freezes every object left (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def imports_set_aside() -> Iterator[None]:
    """Runs the block (the command's imports) with the collector off, then ``set_aside_import_objects``.

    The collector is on again afterwards if it was on before, even when an import fails.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        set_aside_import_objects()
        if enabled:
            gc.enable()
