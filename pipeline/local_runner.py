"""Runs the pipeline on this machine: LocalDagRunner, SQLite metadata, Beam's FnApiRunner."""

import os

from tfx import v1 as tfx

from pipeline import schema as schema_lib
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from imat_common.run_lock import run_lock
from imat_common.workdir import metadata_path


def with_staged_schema(config: PipelineConfig) -> PipelineConfig:
    """The config with its schema copied to ``<workdir>/schema/<digest>/schema.pbtxt``.

    The schema is ``config.locations.schema_path``'s (a reviewed, checked-in file) or, without one, the
    schema generated from the label map. A path per content keeps ImportSchemaGen's cache
    honest: it keys on the path, so an edited file at the same path would be reused unread.
    """
    locations = config.locations
    if locations.schema_path:
        schema = schema_lib.read_schema(locations.schema_path)
    else:
        from imat_common.features import load_label_map

        schema = schema_lib.build_schema(load_label_map(locations.label_map))
    folder = os.path.join(os.path.dirname(os.path.abspath(locations.pipeline_root)), "schema")
    return config.with_settings(schema_path=schema_lib.stage_schema(schema, folder))


def metadata_config(config: PipelineConfig):
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path(config.locations.pipeline_root))


def run(config: PipelineConfig) -> PipelineConfig:
    """Runs every component in-process; metadata lives beside the artifacts. One run per pipeline root.

    Returns:
      The config as run (with the staged schema's path).

    Raises:
      RunLockedError: another run is using the same pipeline root.
    """
    with run_lock(config.locations.pipeline_root):
        config = with_staged_schema(config)
        tfx.orchestration.LocalDagRunner().run(
            create_pipeline(config, metadata_connection_config=metadata_config(config))
        )
    return config
