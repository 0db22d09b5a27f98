"""Where a backbone's starting weights come from: ImageNet (Keras' cache or a download), none, or a file.

A file may be local or on any file system Beam knows (``gs://`` on Dataflow and Vertex AI):
a remote file is copied once into a local cache, because Keras loads ``.h5`` weights from a
local path only.
"""

import hashlib
import os
import shutil
import tempfile
from typing import Optional

IMAGENET = "imagenet"
NONE = ("none", "", None)
OFFLINE_HINT = "use --weights none (from scratch) or --weights FILE.h5 (a no-top weights file of the backbone)"


class WeightsUnavailable(RuntimeError):
    """The configured weights cannot be had; the message is one line that says what to do."""


def resolve(weights: Optional[str], cache_dir: Optional[str] = None) -> Optional[str]:
    """``weights`` as ``keras.applications`` takes it: "imagenet", None, or a local file path.

    Args:
      weights: "imagenet", "none"/"" (from scratch), a local path, or a URI Beam's file systems
        read (``gs://bucket/backbone.h5``).
      cache_dir: where remote files are copied (default: a folder in the system's temp dir).

    Raises:
      WeightsUnavailable: naming the file that does not exist or cannot be read.
    """
    if weights == IMAGENET:
        return IMAGENET
    if weights in NONE:
        return None
    if "://" not in weights:
        if not os.path.isfile(weights):
            raise WeightsUnavailable(f"backbone weights file {weights!r} does not exist: {OFFLINE_HINT}")
        return weights
    return _local_copy(weights, cache_dir or os.path.join(tempfile.gettempdir(), "imat-weights"))


def _local_copy(uri: str, cache_dir: str) -> str:
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    local = os.path.join(
        cache_dir, hashlib.sha256(uri.encode()).hexdigest()[:16] + "-" + os.path.basename(uri.rstrip("/"))
    )
    if os.path.isfile(local):
        return local
    os.makedirs(cache_dir, exist_ok=True)
    partial = f"{local}.partial-{os.getpid()}"
    try:
        # Uncompressed: Beam would otherwise guess from the name and gunzip a "weights.h5.gz".
        with (
            FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as source,
            open(partial, "wb") as target,
        ):
            shutil.copyfileobj(source, target, length=1 << 20)
        os.replace(partial, local)  # whole or not at all: a copy cut short is never loaded
    except (OSError, ValueError) as e:  # Beam: BeamIOError (an OSError) or an unknown scheme (ValueError)
        if os.path.exists(partial):
            os.remove(partial)
        raise WeightsUnavailable(f"backbone weights {uri!r} cannot be read ({_first_line(e)}): {OFFLINE_HINT}") from e
    return local


def check_imagenet(backbone: str) -> None:
    """Makes sure ``backbone``'s ImageNet weights are in Keras' cache, downloading them if needed.

    Run before a pipeline starts, so that an offline machine stops in one line rather than in
    the Trainer, after ExampleGen, statistics and Transform have run.

    Raises:
      WeightsUnavailable: neither cached nor downloadable; the message names the flags to use.
    """
    from trainer import backbones

    spec = backbones.get_backbone(backbone)
    side = max(spec.min_size, 75)
    try:
        spec.build(include_top=False, weights=IMAGENET, input_shape=(side, side, 3))
    except Exception as e:  # Keras' get_file raises a bare Exception on a failed download
        raise WeightsUnavailable(
            f"ImageNet weights for {backbone} are not in Keras' cache and cannot be downloaded "
            f"({_first_line(e)}): {OFFLINE_HINT}"
        ) from e


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
