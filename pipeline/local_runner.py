"""Runs the pipeline on this machine: LocalDagRunner, SQLite metadata, Beam's FnApiRunner."""
import os

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


def run(config: PipelineConfig) -> None:
    """Runs every component in-process; metadata lives beside the artifacts."""
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(config.pipeline_root, "metadata.sqlite"))
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata_connection_config=metadata))
