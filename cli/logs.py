"""How the ``imat`` commands log: the project's own lines, warnings, and a line per pipeline component.

TensorFlow, TFX, Beam and absl log hundreds of INFO lines per run (protobuf dumps of the pipeline,
type-hint notes, optional modules not installed); a command shows them only with ``imat -v``.
"""

import contextlib
import logging
import os
import sys
import time
import warnings
from typing import Dict, Iterator, Optional, TextIO

# This project's packages: their INFO lines (download progress, training phases) are the output.
OWN_LOGGERS = ("imat_common", "trainer", "components", "pipeline", "cli")
LIBRARY_LOGGERS = (
    "absl",
    "tensorflow",
    "tfx",
    "apache_beam",
    "tensorflow_transform",
    "tensorflow_model_analysis",
    "tensorflow_data_validation",
    "ml_metadata",
)
# TFX 1.16's input resolution logs these on every run of a resolver node; they ask nothing of the user.
_HARMLESS_WARNINGS = frozenset(
    {"ArtifactQuery.property_predicate is not supported.", "ContextQuery.property_predicate is not supported."}
)
# TensorFlow's notices that a library (TFMA, TFT) calls a deprecated API: for that library's authors.
_DEPRECATION = "is deprecated and will be removed"
# What TFX's LocalDagRunner logs (through absl) around each component it launches.
_RUNNING, _FINISHED = "Component %s is running.", "Component %s is finished."


class _DropHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _HARMLESS_WARNINGS and _DEPRECATION not in str(record.msg)


def configure(verbose: bool = False) -> None:
    """Sets the logging of a command: library logs at WARNING, or at INFO with ``verbose``.

    Call it before TensorFlow is imported: its C++ log level is read once, at import. Quiet, that
    level also hides the CUDA plugins' "Unable to register ... factory" errors that every import
    prints on a machine without a GPU. A ``TF_CPP_MIN_LOG_LEVEL`` already set is kept.

    Args:
      verbose: show the libraries' INFO lines (and TensorFlow's C++ warnings) too.
    """
    from absl import logging as absl_logging  # first: the "absl" logger must be absl's own class

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # also when something configured the root logger first
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    # absl's level also through its flag: TensorFlow's SavedModel writer silences absl and then
    # restores the flag's level, not the logger's.
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    for logger in (absl_logging.get_absl_logger(), logging.getLogger("tensorflow")):
        # One filter per logger however often a process configures (tests call commands in-process).
        for old in [f for f in logger.filters if isinstance(f, _DropHarmless)]:
            logger.removeFilter(old)
        if not verbose:
            logger.addFilter(_DropHarmless())
    # Google's client libraries warn at import that Python 3.10 or google-cloud-storage 2 is old;
    # TFX 1.16 needs both.
    for module in (r"google\.api_core", r"google\.cloud\.aiplatform"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)


class _ComponentProgress(logging.Filter):
    """Turns LocalDagRunner's records around each component into progress lines.

    A filter on the ``absl`` logger, so it sees those INFO records even when the command is quiet;
    it passes on only the records at or above ``pass_level``.
    """

    def __init__(self, stream: TextIO, pass_level: int):
        super().__init__()
        self._stream, self._pass_level = stream, pass_level
        self._started: Dict[str, float] = {}

    def _print(self, line: str) -> None:
        print(line, file=self._stream, flush=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _RUNNING and record.args:
            self._started[record.args[0]] = time.monotonic()
            self._print(f"{record.args[0]} ...")
        elif record.msg == _FINISHED and record.args:
            seconds = time.monotonic() - self._started.pop(record.args[0], time.monotonic())
            self._print(f"{record.args[0]} done in {seconds:.1f} s")
        return record.levelno >= self._pass_level


@contextlib.contextmanager
def component_progress(stream: Optional[TextIO] = None) -> Iterator[None]:
    """While open, each component TFX's LocalDagRunner launches prints a line as it starts and one
    with its elapsed seconds as it ends (to ``stream``, default stderr); other logging is unchanged.
    """
    from absl import logging as absl_logging

    absl_logger = absl_logging.get_absl_logger()
    level, verbosity = absl_logger.level, absl_logging.get_verbosity()
    progress = _ComponentProgress(stream or sys.stderr, pass_level=absl_logger.getEffectiveLevel())
    absl_logger.addFilter(progress)
    # Through the flag (absl's levels grow with verbosity), which is what TensorFlow restores after
    # each SavedModel it writes: a plain setLevel would be undone by the first Transform.
    absl_logging.set_verbosity(max(verbosity, absl_logging.INFO))
    try:
        yield
    finally:
        absl_logger.removeFilter(progress)
        absl_logging.set_verbosity(verbosity)
        absl_logger.setLevel(level)
