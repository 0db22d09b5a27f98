"""One worker of the two-process training test: ``python -m tests.multi_worker_run ARGS.json``.

TF_CONFIG comes from the environment, as on Vertex AI Training; ARGS.json holds the FnArgs
fields. Runs the real ``trainer.task.run_fn``.
"""

import faulthandler
import json
import logging
import signal
import sys

import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)


def main(path: str) -> None:
    from tfx.components.trainer.fn_args_utils import FnArgs

    from trainer import task

    # TFX's imports install absl's handler on the root logger first; force ours (to stderr).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    faulthandler.register(signal.SIGUSR1)  # the test dumps the stacks of a worker that hangs
    with open(path) as f:
        task.run_fn(FnArgs(**json.load(f)))


if __name__ == "__main__":
    main(sys.argv[1])
