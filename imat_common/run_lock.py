"""One run at a time per pipeline root: a lock the kernel releases when its holder exits."""

import contextlib
import errno
import fcntl
import os
from typing import Iterator

LOCK_FILE = "run.lock"  # in the pipeline root


class RunLockedError(RuntimeError):
    """Another run holds this pipeline root."""


@contextlib.contextmanager
def run_lock(pipeline_root: str) -> Iterator[None]:
    """Holds ``<pipeline_root>/run.lock`` for one run at a time.

    Two runs on one pipeline root would write one SQLite metadata store and one serving folder at once.
    An advisory ``flock``: the kernel releases it when the holder exits, however it exits (SIGKILL
    included), so a killed run never leaves a stale lock behind.

    Raises:
      RunLockedError: naming the folder and the process that holds it.
    """
    os.makedirs(pipeline_root, exist_ok=True)
    path = os.path.join(pipeline_root, LOCK_FILE)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunLockedError(
                f"another imat run (process {holder}) is running on {pipeline_root}; wait for it to finish, "
                "or give this run its own --workdir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)  # the lock itself goes with the file descriptor
