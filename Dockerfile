# The pipeline image. Every component on Vertex AI Pipelines / Kubeflow Pipelines, the Trainer's
# Vertex AI Training job and (with --sdk_container_image, the default) the Dataflow workers run it.
# Build from the repository root:
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/imat-pipeline:TAG .
#   docker build --build-arg TF_CUDA=false ...    # CPU only: a few GB smaller, no GPU training
FROM gcr.io/tfx-oss-public/tfx:1.16.0

# TFT and TFMA 1.16 need Keras 2 (tf-keras): set before any process first imports TensorFlow.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /pipeline

# Exactly the versions CI tests (TFX 1.16, TF 2.16.2, Beam 2.74, protobuf 3.20.3, kfp 2.5), in a
# layer of its own so that code changes do not reinstall them.
COPY requirements.lock ./
RUN python -c "import sys; assert sys.version_info[:2] == (3, 10), sys.version" \
 && python -m pip install -r requirements.lock

# TensorFlow 2.16's CUDA 12 / cuDNN libraries, from pip, for GPU training.
ARG TF_CUDA=true
RUN if [ "$TF_CUDA" = "true" ]; then python -m pip install "tensorflow[and-cuda]==2.16.2"; fi \
 && python -c "import google.protobuf as p, tfx, apache_beam as b; \
assert p.__version__.startswith('3.20.'), p.__version__; assert tfx.__version__ == '1.16.0'; \
assert b.__version__ == '2.74.0', b.__version__"

# Dataflow starts workers with the Beam SDK's boot program: take it from the Beam release installed
# above, not from whatever Beam the base image was built with.
COPY --from=apache/beam_python3.10_sdk:2.74.0 /opt/apache/beam /opt/apache/beam

# The project: the run and preprocessing functions are imported by path from here, and
# /pipeline/setup.py is Dataflow's --setup_file.
COPY setup.py ./
COPY components ./components
COPY pipeline ./pipeline
COPY trainer ./trainer
COPY kubeflow ./kubeflow
RUN python -m pip install --no-deps -e . \
 && python -c "import trainer.task, trainer.preprocessing, pipeline.run_parameters, kubeflow.runner"

# Only Dataflow uses the entrypoint: Kubeflow / Vertex AI and Vertex AI Training set the command.
ENTRYPOINT ["/opt/apache/beam/boot"]
