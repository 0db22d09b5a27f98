"""``imat submit``: run a compiled pipeline on Vertex AI Pipelines, or on a Kubeflow Pipelines v2 endpoint.

  imat submit --project P --region us-central1 --pipeline build/imat.json --param train_steps=5000
  imat submit --kfp_host https://HOST/pipeline --pipeline build/imat.yaml --param micro_f1_lower_bound=0.5

Credentials come only from the environment: Application Default Credentials (``gcloud auth
application-default login``, or the service account of the machine), or for KFP whatever its
client finds there. No flag takes a key or a token, and none is written into the job.
"""

import argparse
import json
from typing import Any, Dict, List, Optional

import yaml

from imat_common.errors import user_error


def _runtime_settings() -> List[str]:
    """The settings compiled as pipeline parameters (declared ``runtime`` in their field's metadata)."""
    from imat_common.settings import is_runtime
    from pipeline.config import PipelineConfig

    return [name for name, (_, field) in PipelineConfig.settings_index().items() if is_runtime(field)]


# Pipeline spec parameter types -> how a --param value is read.
_READERS = {
    "NUMBER_INTEGER": int,
    "NUMBER_DOUBLE": float,
    "STRING": str,
    "BOOLEAN": lambda v: {"true": True, "false": False}[v.lower()],
}


class SubmitError(ValueError):
    """The job cannot be submitted as asked; the message says why."""


def load_pipeline(path: str) -> Dict[str, Any]:
    """Reads a compiled pipeline: a Vertex PipelineJob JSON, or a KFP v2 pipeline spec YAML."""
    try:
        with open(path) as f:
            document = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    except OSError as e:
        raise SubmitError(f"cannot read the compiled pipeline {path}: {e.strerror}") from None
    if not isinstance(document, dict) or not ("pipelineSpec" in document or "root" in document):
        raise SubmitError(f"{path} is not a pipeline compiled by imat compile")
    return document


def parameter_types(document: Dict[str, Any]) -> Dict[str, str]:
    """Each pipeline parameter's type, from the root's input definitions."""
    spec = document.get("pipelineSpec", document)
    definitions = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {name: d.get("parameterType") or d.get("type") for name, d in definitions.items()}


def parse_parameters(pairs: List[str], types: Dict[str, str]) -> Dict[str, Any]:
    """``NAME=VALUE`` strings to typed parameter values, checked against the pipeline's parameters."""
    values = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise SubmitError(f"--param {pair!r}: expected NAME=VALUE")
        if name not in types:
            raise SubmitError(f"--param {name}: the pipeline has no such parameter; it has {', '.join(sorted(types))}")
        try:
            values[name] = _READERS[types[name]](raw)
        except (KeyError, ValueError):
            raise SubmitError(f"--param {name}={raw}: not a valid {types[name]}") from None
    return values


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="imat submit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pipeline", required=True, help="imat compile's .json (Vertex AI) or .yaml (KFP)")
    parser.add_argument("--project", help="Google Cloud project (Vertex AI)")
    parser.add_argument("--region", help="Vertex AI region, e.g. us-central1")
    parser.add_argument("--kfp_host", help="submit to this Kubeflow Pipelines v2 endpoint instead of Vertex AI")
    parser.add_argument("--kfp_namespace", default="kubeflow", help="the KFP namespace (multi-user installs)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"a pipeline parameter for this run; repeat ({', '.join(_runtime_settings())})",
    )
    parser.add_argument("--pipeline_root", help="override the compiled gs:// pipeline root")
    parser.add_argument("--display_name", help="the run's name (default: the pipeline's)")
    parser.add_argument("--job_id", help="Vertex AI job id (default: generated)")
    parser.add_argument("--experiment", help="Vertex AI experiment, or KFP experiment name")
    parser.add_argument("--service_account", help="the identity the run uses (an email)")
    parser.add_argument("--network", help="Vertex AI: the VPC network to peer, projects/N/global/networks/NAME")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="Vertex AI job label")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        dest="enable_caching",
        action="store_true",
        default=None,
        help="reuse unchanged steps (the compiled default)",
    )
    cache.add_argument("--no_cache", dest="enable_caching", action="store_false", help="run every step again")
    args = parser.parse_args(argv)
    if not args.kfp_host and not (args.project and args.region):
        parser.error("Vertex AI needs --project and --region (or give --kfp_host for Kubeflow Pipelines)")
    return args


def submit_vertex(args: argparse.Namespace, document: Dict[str, Any], parameters: Dict[str, Any]):
    """Creates the Vertex AI PipelineJob and submits it (without waiting). Returns the job."""
    if "pipelineSpec" not in document:
        raise SubmitError(f"{args.pipeline} is a KFP pipeline spec: Vertex AI takes the .json from imat compile")
    root = args.pipeline_root or document.get("runtimeConfig", {}).get("gcsOutputDirectory", "")
    if not root.startswith("gs://"):
        raise SubmitError(
            f"Vertex AI needs a gs:// pipeline root, got {root!r} (compile with one, or pass --pipeline_root)"
        )
    labels = {}
    for pair in args.label:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SubmitError(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    from google.cloud import aiplatform

    # No credentials argument anywhere: the client library finds ADC in the environment.
    aiplatform.init(project=args.project, location=args.region)
    job = aiplatform.PipelineJob(
        display_name=args.display_name
        or document.get("displayName")
        or document["pipelineSpec"]["pipelineInfo"]["name"],
        template_path=args.pipeline,
        job_id=args.job_id,
        pipeline_root=args.pipeline_root,
        parameter_values=parameters,
        enable_caching=args.enable_caching,
        labels=labels or None,
        project=args.project,
        location=args.region,
    )
    job.submit(service_account=args.service_account, network=args.network, experiment=args.experiment)
    return job


def submit_kfp(args: argparse.Namespace, document: Dict[str, Any], parameters: Dict[str, Any]):
    """Creates a run on a Kubeflow Pipelines v2 endpoint. Returns kfp's RunPipelineResult."""
    if "pipelineSpec" in document:
        raise SubmitError(
            f"{args.pipeline} is a Vertex AI PipelineJob: Kubeflow Pipelines takes the .yaml "
            "from imat compile --kfp_yaml"
        )
    try:
        import kfp
    except ImportError:
        raise SubmitError("kfp is not installed: pip install -e '.[kubeflow]'") from None
    client = kfp.Client(host=args.kfp_host, namespace=args.kfp_namespace)
    return client.create_run_from_pipeline_package(
        pipeline_file=args.pipeline,
        arguments=parameters,
        run_name=args.display_name or document["pipelineInfo"]["name"],
        experiment_name=args.experiment,
        namespace=args.kfp_namespace,
        pipeline_root=args.pipeline_root,
        enable_caching=args.enable_caching,
        service_account=args.service_account,
    )


def main(argv: Optional[List[str]] = None):
    """Submits the compiled pipeline; prints where to follow it. Returns the job or run."""
    args = parse_args(argv)
    try:
        document = load_pipeline(args.pipeline)
        parameters = parse_parameters(args.param, parameter_types(document))
        if args.kfp_host:
            result = submit_kfp(args, document, parameters)
            print(f"submitted run {result.run_id} to {args.kfp_host}")
        else:
            result = submit_vertex(args, document, parameters)
            print(f"submitted {result.resource_name}")
    except SubmitError as e:
        raise user_error("submit", e) from None
    return result
