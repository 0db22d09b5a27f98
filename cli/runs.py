"""Reads what a local run did from its ML Metadata store: executions, blessing, pushed model."""

import dataclasses
import os
from typing import List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2


@dataclasses.dataclass(frozen=True)
class Execution:
    component: str  # the node id, e.g. "Trainer"
    state: str  # COMPLETE, CACHED, FAILED, ...
    seconds: float
    run_id: str
    started: float = 0.0  # seconds since the epoch


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"no pipeline metadata at {metadata_path}: run the pipeline first (imat run)")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def executions(metadata_path: str) -> List[Execution]:
    """Every execution, oldest first, with the pipeline run it belongs to."""
    store = open_store(metadata_path)
    result = []
    for e in sorted(store.get_executions(), key=lambda e: e.id):
        contexts = store.get_contexts_by_execution(e.id)
        node = next((c.name.split(".", 1)[-1] for c in contexts if c.type == "node"), str(e.type_id))
        run_id = next((c.name for c in contexts if c.type == "pipeline_run"), "")
        result.append(
            Execution(
                node,
                metadata_store_pb2.Execution.State.Name(e.last_known_state),
                (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000,
                run_id,
                e.create_time_since_epoch / 1000,
            )
        )
    return result


def last_run(metadata_path: str) -> List[Execution]:
    """The executions of the most recent pipeline run."""
    all_executions = executions(metadata_path)
    if not all_executions:
        return []
    latest = all_executions[-1].run_id
    return [e for e in all_executions if e.run_id == latest]


def latest_artifact_uri(metadata_path: str, type_name: str) -> Optional[str]:
    """URI of the newest artifact of a type (e.g. ModelEvaluation), or None."""
    artifacts = open_store(metadata_path).get_artifacts_by_type(type_name)
    return max(artifacts, key=lambda a: a.id).uri if artifacts else None


def latest_output_uri(metadata_path: str, component: str, type_name: str) -> Optional[str]:
    """URI of the newest artifact of a type that a component (node id, e.g. SchemaGen) output, or None."""
    store = open_store(metadata_path)
    types = [t for t in store.get_artifact_types() if t.name == type_name]
    nodes = [c for c in store.get_contexts_by_type("node") if c.name.split(".", 1)[-1] == component]
    if not types or not nodes:
        return None
    execution_ids = [e.id for c in nodes for e in store.get_executions_by_context(c.id)]
    outputs = [
        e.artifact_id
        for e in store.get_events_by_execution_ids(execution_ids)
        if e.type == metadata_store_pb2.Event.OUTPUT
    ]
    artifacts = [a for a in store.get_artifacts_by_id(outputs) if a.type_id == types[0].id]
    return max(artifacts, key=lambda a: a.id).uri if artifacts else None


def latest_blessing(metadata_path: str) -> Optional[bool]:
    """Whether the newest Evaluator run blessed its model (None before any evaluation)."""
    artifacts = open_store(metadata_path).get_artifacts_by_type("ModelBlessing")
    if not artifacts:
        return None
    blessed = max(artifacts, key=lambda a: a.id).custom_properties.get("blessed")
    return bool(blessed and blessed.int_value)
