"""``imat download``: the download job, image URLs to sharded TFRecords.

The Beam job and its flags are ``components/download/job.py``'s; see ``imat download --help``.
"""

from typing import List, Optional

# At the top, not in main: `imat` imports a command's module with the garbage collector set aside
# (imat_common/process_gc.py), and Beam's objects are most of what this command's imports make.
from components.download import job


def main(argv: Optional[List[str]] = None) -> None:
    job.main(argv)
