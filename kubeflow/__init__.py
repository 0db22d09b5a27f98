"""Deployment to Vertex AI Pipelines and Kubeflow Pipelines v2: cloud settings (config), compiling
``create_pipeline`` with KubeflowV2DagRunner (runner, compile_command: ``imat compile``) and
submitting the compiled job (submit: ``imat submit``)."""
