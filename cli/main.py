"""``imat``: the project's command line.

imat run         download the demo data (or use --data) and run the TFX pipeline locally
imat predict     tag images with the last pushed model
imat report      per-label metrics of the last evaluation, the decision rules, the label distribution
imat submission  score a split (the competition's test file) in batch and write the submission CSV
imat audit       the labels the model confidently contradicts (wrong or missing), ranked: CSV and HTML
imat schema      write the curated schema from a label map, or check a schema file against one
imat similar     the catalogue items most like an image or an item id (needs an index)
imat index       embed a catalogue of TFRecords and build the similar-product index (Beam)
imat compile     compile the pipeline for Vertex AI Pipelines / Kubeflow Pipelines v2
imat submit      submit a compiled pipeline to Vertex AI or a KFP endpoint
imat schedule    create or update a Vertex AI schedule that runs a compiled pipeline (weekly retraining)
imat demo        generate the embedded demo data, serve it on loopback, download it
imat demo-data   only generate the demo images, JSON and label map
imat download    the download job (see ``imat download --help``)

-v, --verbose    (before or after the command) the libraries' INFO logs too: TensorFlow, TFX,
                 Beam, absl; without it a command prints its own output, progress and warnings

Exit code 2: a flag or an input file to fix (a malformed label map, manifest or data, a used
output folder, weights that cannot be had), said in one line on stderr, with no traceback.
"""

import contextlib
import importlib
import sys
from typing import Callable, Iterator, List, Optional

from cli import logs
from imat_common import distributions, process_gc
from imat_common.errors import USER_ERROR_EXIT

VERBOSE_FLAGS = ("-v", "--verbose")


# Imported only when chosen: most commands pull in TensorFlow or Beam, `imat --help` should not.
_MODULES = {
    "run": "cli.run",
    "predict": "cli.predict",
    "report": "cli.report",
    "submission": "cli.submission",
    "audit": "cli.audit",
    "schema": "cli.schema",
    "similar": "cli.similar",
    "index": "cli.index",
    "compile": "cli.compile",
    "submit": "cli.submit",
    "schedule": "cli.schedule",
    "demo": "cli.demo",
    "demo-data": "cli.demo:data_main",
    "download": "cli.download",
}


def _load(spec: str) -> Callable[[List[str]], None]:
    """The command's function, its module imported (most of a command's imports happen here)."""
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function or "main")


@contextlib.contextmanager
def _own_process_imports() -> Iterator[None]:
    """A command's imports in its own process: the collector set aside, the installed distributions scanned once."""
    with process_gc.imports_set_aside(), distributions.scanned_once():
        yield


def main(argv: Optional[List[str]] = None) -> None:
    """Runs one ``imat`` command.

    Args:
      argv: the command and its flags; default: ``sys.argv[1:]``, the process's own command line,
        which also imports with the garbage collector set aside (``imat_common/process_gc.py``) and
        scans the installed distributions once (``imat_common/distributions.py``).

    Raises:
      SystemExit: 2 with one line on stderr for a user error (a malformed label map, manifest or
        data, a setting that cannot be read, a mismatched output folder, weights that cannot be
        had), or the command's own code.
    """
    own_process = argv is None
    argv = sys.argv[1:] if own_process else argv
    # The one global flag, anywhere on the line (`imat -v run`, `imat run -v`): no command has a -v.
    verbose = any(arg in VERBOSE_FLAGS for arg in argv)
    argv = [arg for arg in argv if arg not in VERBOSE_FLAGS]
    if not argv or argv[0] not in _MODULES:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    logs.configure(verbose)
    with _own_process_imports() if own_process else contextlib.nullcontext():
        from components.download.plan import PlanMismatchError  # imports Beam
        from components.download.records import ManifestError
        from components.validation import DataValidationError
        from imat_common.features import LabelMapError
        from imat_common.run_lock import RunLockedError
        from imat_common.settings import SettingsError
        from trainer.weights import WeightsUnavailable

        command = _load(_MODULES[argv[0]])
    try:
        command(argv[1:])
    except (
        ManifestError,
        LabelMapError,
        PlanMismatchError,
        DataValidationError,
        RunLockedError,
        SettingsError,
        WeightsUnavailable,
    ) as e:
        # Bad input is the user's to fix: say what and where, without a traceback.
        print(f"imat {argv[0]}: error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


if __name__ == "__main__":
    main()
