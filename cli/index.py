"""``imat index``: embeds a catalogue with a pushed model and builds the similar-product index.

The Beam job and its flags are ``components/similar/embed_job.py``'s; see ``imat index --help``
(``--m`` and ``--nprobe`` set the compressed backend's code size and cells scanned per query).
A bad flag value or input exits with status 2 and one line on stderr, before anything is embedded.
"""

from typing import List, Optional

from imat_common.errors import user_error


def main(argv: Optional[List[str]] = None) -> None:
    """Runs the job and prints its summary.

    Raises:
      SystemExit: 2 with one line on stderr for a user error (an unknown model or backend, an
        empty catalogue, an ``--m`` or ``--nprobe`` that the model's embedding width rules out).
    """
    from components.similar import embed_job
    from components.similar.index import SimilarError

    try:
        summary = embed_job.run(argv)
    except SimilarError as e:
        raise user_error("index", e) from None
    print(embed_job.format_summary(summary))
