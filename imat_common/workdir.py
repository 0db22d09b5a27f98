"""The layout of a local work folder (``imat run --workdir``), written by the demo and the
local pipeline and read by every command."""

import dataclasses
import glob
import os
from typing import Optional

DEFAULT_WORKDIR = "imat-demo"
LABEL_MAP_FILE = "label_map.csv"  # labelId,taskId,labelName,taskName
METADATA_FILE = "metadata.sqlite"  # in the pipeline root


@dataclasses.dataclass(frozen=True)
class Workdir:
    root: str = DEFAULT_WORKDIR

    @property
    def source(self) -> str:
        """The demo's images, competition JSON and label map."""
        return os.path.join(self.root, "source")

    @property
    def label_map(self) -> str:
        return os.path.join(self.source, LABEL_MAP_FILE)

    @property
    def data(self) -> str:
        """The download job's output: ``<split>/*.tfrecord.gz``."""
        return os.path.join(self.root, "data")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.root, "pipeline")

    @property
    def metadata(self) -> str:
        """The local runs' ML Metadata store."""
        return metadata_path(self.pipeline_root)

    @property
    def serving(self) -> str:
        """The Pusher's destination: one numbered folder per blessed model."""
        return os.path.join(self.root, "serving")

    @property
    def similar(self) -> str:
        """Similar-product indexes, one folder per model version."""
        return os.path.join(self.root, "similar")


def latest_pushed_model(serving_dir: str) -> Optional[str]:
    """The newest complete versioned folder the Pusher wrote, or None.

    Complete means it has ``saved_model.pb``: TFX's Pusher copies that file last, so a copy cut short
    (a killed run, a full disk) leaves a folder without it, which serving systems ignore too.
    """
    versions = sorted(
        (
            p
            for p in glob.glob(os.path.join(serving_dir, "*"))
            if os.path.basename(p).isdigit() and os.path.isfile(os.path.join(p, "saved_model.pb"))
        ),
        key=lambda p: int(os.path.basename(p)),
    )
    return versions[-1] if versions else None


def metadata_path(pipeline_root: str) -> str:
    """The local ML Metadata store of a pipeline root."""
    return os.path.join(pipeline_root, METADATA_FILE)


def model_or_newest(model: Optional[str], workdir: str) -> str:
    """``model`` when given, else the newest model the Pusher wrote in ``workdir``.

    Raises:
      FileNotFoundError: no model given and none pushed, naming where it looked.
    """
    serving = Workdir(workdir).serving
    newest = model or latest_pushed_model(serving)
    if not newest:
        raise FileNotFoundError(f"no pushed model in {serving}: run `imat run` first, or pass --model")
    return newest
