"""``SimilarityIndexer``: the TFX component after Pusher that indexes the catalogue for "more like this".

Takes Pusher's ``pushed_model`` (the model that serves) and ExampleGen's ``examples`` (the
catalogue), runs the same Beam transforms as ``imat index`` with the pipeline's Beam
arguments, and outputs a ``SimilarityIndex`` artifact. A model that was not pushed gets
no index (the artifact says ``built=0``), so an index always matches a served model.
With ``index_destination`` (the pipeline's ``similar_dir``) the index is also copied to
``<index_destination>/<model version>``, where ``imat similar`` finds it.

In ``create_pipeline``::

    indexer = SimilarityIndexer(examples=example_gen.outputs["examples"],
                                pushed_model=pusher.outputs["pushed_model"],
                                label_map=config.locations.label_map,
                                index_destination=config.locations.similar_dir)
"""

import logging
import os

import apache_beam as beam
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

from components.similar import embed_job
from components.similar.index import DEFAULT_BACKEND, SimilarityIndex

log = logging.getLogger(__name__)
InputArtifact, OutputArtifact = tfx.dsl.components.InputArtifact, tfx.dsl.components.OutputArtifact
Parameter, BeamComponentParameter = tfx.dsl.components.Parameter, tfx.dsl.components.BeamComponentParameter


class SimilarityIndexArtifact(Artifact):
    """A similar-product index folder (``components/similar/index.py``) and the model it belongs to."""

    TYPE_NAME = "imat.SimilarityIndex"  # KFP v2 needs custom types as <namespace>.<Name>


def catalogue_of(examples, splits: str) -> dict:
    """Split name -> file pattern of an Examples artifact; ``splits`` "" means all of them."""
    names = artifact_utils.decode_split_names(examples.split_names)
    wanted = [s.strip() for s in splits.split(",") if s.strip()] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"splits {unknown} are not in the examples (they have {names})")
    return {name: os.path.join(artifact_utils.get_split_uri([examples], name), "*") for name in wanted}


def index_pushed_model(
    examples,
    pushed_model,
    index,
    beam_pipeline: beam.Pipeline,
    splits: str = "",
    backend: str = DEFAULT_BACKEND,
    label_map: str = "",
    index_destination: str = "",
    batch_size: int = 64,
    thumbnail_size: int = 96,
) -> None:
    """The component's logic, on artifacts (anything with ``uri`` and custom properties).

    Records the model's fingerprint, version, item count and where the index was copied
    as the output artifact's custom properties.
    """
    if pushed_model.get_int_custom_property("pushed") != 1:
        log.info("the model was not pushed (not blessed): no index is built")
        index.set_int_custom_property("built", 0)
        return
    # Every Pusher (to a folder, or to Vertex AI whose destination is no folder) copies the model
    # into its artifact: the same files, so the same fingerprint as the served copy.
    version = pushed_model.get_string_custom_property("pushed_version")
    settings = embed_job.IndexSettings(
        model_dir=pushed_model.uri,
        catalogue=catalogue_of(examples, splits),
        output=index.uri,
        backend=backend,
        batch_size=batch_size,
        thumbnail_size=thumbnail_size,
        label_map=label_map,
        model_version=version,
    )
    summary = embed_job.index_catalogue(beam_pipeline, settings)
    log.info("%s", embed_job.format_summary(summary))
    index.set_int_custom_property("built", 1)
    index.set_int_custom_property("items", summary["items"])
    index.set_string_custom_property("model_fingerprint", summary["model"]["fingerprint"])
    index.set_string_custom_property("model_version", summary["model"]["version"])
    if index_destination:
        destination = os.path.join(index_destination, version or embed_job.index_version(pushed_model.uri))
        SimilarityIndex.load(index.uri).save(destination)
        index.set_string_custom_property("index_destination", destination)
        log.info("index copied to %s", destination)


@tfx.dsl.components.component(use_beam=True)
def SimilarityIndexer(
    examples: InputArtifact[tfx.types.standard_artifacts.Examples],
    pushed_model: InputArtifact[tfx.types.standard_artifacts.PushedModel],
    index: OutputArtifact[SimilarityIndexArtifact],
    splits: Parameter[str] = "",
    backend: Parameter[str] = DEFAULT_BACKEND,
    label_map: Parameter[str] = "",
    index_destination: Parameter[str] = "",
    batch_size: Parameter[int] = 64,
    thumbnail_size: Parameter[int] = 96,
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
    """Embeds the catalogue with the pushed model and builds its similarity index.

    Args:
      examples: the catalogue (ExampleGen's output); ``splits`` picks splits ("" all).
      pushed_model: Pusher's output; nothing is built when it was not pushed.
      index: the index folder.
      backend: the k-NN library (``components/similar/backends.py``); "auto" (the default) picks
        HNSW for small catalogues and the compressed IVF-PQ for large ones.
      label_map: label_map.csv, so results print names and tasks.
      index_destination: also copy the index to ``<this>/<model version>``.
      batch_size: images per model call; thumbnail_size: thumbnails' longer side (0: none).
      beam_pipeline: made by TFX with the pipeline's Beam arguments.
    """
    index_pushed_model(
        examples,
        pushed_model,
        index,
        beam_pipeline,
        splits,
        backend,
        label_map,
        index_destination,
        batch_size,
        thumbnail_size,
    )
