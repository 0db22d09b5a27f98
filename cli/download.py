"""``imat download``: the download job, image URLs to sharded TFRecords.

The Beam job and its flags are ``components/download/job.py``'s; see ``imat download --help``.
"""

from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    from components.download import job

    job.main(argv)
