"""A Pusher whose local versions appear whole or not at all.

TFX's Pusher copies the model file by file into ``<serving_dir>/<version>`` (``saved_model.pb``
last, which TensorFlow Serving waits for). A run killed during the copy, or a disk that fills,
leaves a numbered folder with part of a model in it. On a local file system this executor copies
into ``<serving_dir>/.incoming/<version>`` and renames the folder into place, one atomic step; on
a remote file system (``gs://``), where a folder cannot be renamed atomically, TFX's own order stands.
"""

import os
import shutil

from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

INCOMING = ".incoming"  # a dot folder: not a version to any reader (imat_common.workdir) or model server


class Executor(pusher_executor.Executor):
    """TFX's Pusher executor, staging a local push and renaming it into place."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        if destination.WhichOneof("destination") != "filesystem" or "://" in base:
            return super().Do(input_dict, output_dict, exec_properties)
        staging = os.path.join(base, INCOMING)
        # What a killed push left: one run at a time holds the workdir (imat_common.run_lock).
        shutil.rmtree(staging, ignore_errors=True)
        destination.filesystem.base_directory = staging
        staged = dict(exec_properties)
        staged[standard_component_specs.PUSH_DESTINATION_KEY] = proto_utils.proto_to_json(destination)
        super().Do(input_dict, output_dict, staged)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not model_push.get_int_custom_property(pusher_executor._PUSHED_KEY):
            return
        version = model_push.get_string_custom_property(pusher_executor._PUSHED_VERSION_KEY)
        final = os.path.join(base, version)
        if not os.path.exists(final):  # as TFX: a version already there is not pushed again
            os.rename(os.path.join(staging, version), final)
        shutil.rmtree(staging, ignore_errors=True)
        self._MarkPushed(model_push, pushed_destination=final, pushed_version=version)
