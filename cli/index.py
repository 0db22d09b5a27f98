"""``imat index``: embeds a catalogue with a pushed model and builds the similar-product index.

The Beam job and its flags are ``components/similar/embed_job.py``'s; see ``imat index --help``.
"""

from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    from components.similar import embed_job

    embed_job.main(argv)
