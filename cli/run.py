"""``imat run``: the TFX pipeline on this machine, on the demo data or on a download job's output.

  imat run                                   # demo: generate, download, train, evaluate, push
  imat run --data DIR --label_map CSV --workdir W --image_size 299 --weights imagenet --train_steps 5000
  imat run --data DIR --label_map CSV --schema schema.pbtxt    # the reviewed schema (imat schema writes one)
  imat run --data DIR --label_map CSV --train_spans 4      # DIR holds span-N folders: newest span, train on 4
  imat demo --spans 3 && imat run --span 1 && imat run --span 2 && imat run   # the third stops on drift

Without --schema the schema is generated from the label map. Data that breaks it stops the run
before Transform, naming the split and feature; --warn_only logs the problems and goes on.
A data folder of span-N folders (``imat download --span N``) is read by span: the newest, or
--span N; its train folder is compared with the previous span's, and drift beyond the schema's
thresholds stops the run the same way.
"""

import argparse
import json
import os
from typing import List, Optional

from cli import runs
from imat_common import spans
from imat_common.settings import SettingsError
from cli.flags import add_config_flags, config_overrides
from pipeline.config import DEMO_SETTINGS, PipelineConfig, local_config
from imat_common.workdir import DEFAULT_WORKDIR, Workdir, latest_pushed_model, metadata_path
from imat_common.serving import read_thresholds


def parse_args(argv: Optional[List[str]]):
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="imat run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="pipeline root, metadata and serving folder")
    parser.add_argument("--data", help="a download job's --output; without it the demo data is downloaded")
    parser.add_argument("--label_map", help="label_map.csv of --data")
    parser.add_argument(
        "--schema", help="the curated schema (text Schema proto); default: generated from the label map"
    )
    parser.add_argument("--num_images", type=int, default=300, help="demo images to generate (without --data)")
    parser.add_argument("--redownload", action="store_true", help="generate and download the demo data again")
    add_config_flags(
        parser.add_argument_group(
            "pipeline settings",
            "PipelineConfig's production defaults; without --data the demo's smaller settings "
            "apply (pipeline/config.py, DEMO_SETTINGS)",
        )
    )
    parser.add_argument("--beam_arg", action="append", default=None, help="a Beam pipeline arg; repeat")
    args = parser.parse_args(argv)
    if bool(args.data) != bool(args.label_map):
        parser.error("--data and --label_map go together")
    if args.beam_arg:  # before the demo's download: a typo would otherwise surface after it
        from imat_common.beam_flags import check_beam_args

        check_beam_args("run", args.beam_arg)
    return args


def build_config(args) -> PipelineConfig:
    """One config, built the same way for the demo and for user data; every path absolute.

    The demo starts from ``DEMO_SETTINGS`` (small images, from scratch); user data from the
    production defaults. Flags given on the command line override either.
    """
    from imat_common.features import load_label_map

    workdir = os.path.abspath(args.workdir)
    label_map = os.path.abspath(args.label_map) if args.data else Workdir(workdir).label_map
    settings = {} if args.data else dict(DEMO_SETTINGS)
    settings.update(config_overrides(args))
    if args.data:
        settings["data_root"] = os.path.abspath(args.data)
    if args.beam_arg:
        settings["beam_pipeline_args"] = tuple(args.beam_arg)
    if args.schema:
        settings["schema_path"] = os.path.abspath(args.schema)
    data_root = settings.get("data_root") or Workdir(workdir).data
    present = spans.numbers(os.listdir(data_root)) if os.path.isdir(data_root) else []
    if present and "train_spans" not in settings:
        settings["train_spans"] = 1
        print(
            f"{data_root} holds spans {present}: reading by span "
            "(--train_spans 1; --span N for another than the newest)"
        )
    elif settings.get("train_spans") and not present:
        raise SettingsError(
            f"--train_spans {settings['train_spans']}: {data_root} holds no span-N folders "
            "(imat download --span N writes them)"
        )
    if settings.get("span", -1) >= 0 and settings["span"] not in present:
        raise SettingsError(f"--span {settings['span']}: {data_root} holds spans {present}")
    if present and settings.get("train_spans"):
        read = settings["span"] if settings.get("span", -1) >= 0 else present[-1]
        # The download job writes summary.json last: without it the span is still arriving (or failed).
        if not os.path.exists(os.path.join(data_root, spans.folder(read), "summary.json")):
            raise SettingsError(
                f"span {read} in {data_root} has no summary.json: its download has not finished; "
                "rerun `imat download ... --span " + str(read) + "` to complete it, or pass --span for an earlier span"
            )
    return local_config(
        workdir,
        load_label_map(label_map).num_labels,
        pipeline_name="imat" if args.data else "imat-demo",
        label_map=label_map,
        **settings,
    )


def check_weights(config: PipelineConfig) -> None:
    """Before the DAG starts: every Trainer's weights file exists, and its ImageNet weights can be had
    (Keras' cache or a download).

    Raises:
      trainer.weights.WeightsUnavailable: one line naming ``--weights none`` and ``--weights FILE.h5``.
    """
    from trainer import weights

    members = [m.trainer for m in config.members()] or [config.trainer]
    for member in members:
        # A local file must exist; a remote one (gs://) is read where the Trainer runs.
        if member.weights != weights.IMAGENET and "://" not in member.weights:
            weights.resolve(member.weights)
    for backbone in sorted({member.backbone for member in members if member.weights == weights.IMAGENET}):
        weights.check_imagenet(backbone)


def gate_message(metadata: str) -> Optional[str]:
    """The newest blessing's one line on the gate's conditions (``components/quality_gate.py``).

    None before any evaluation, or for a blessing written before the gate recorded its conditions.
    """
    from components.quality_gate import GATE_MESSAGE

    blessings = runs.open_store(metadata).get_artifacts_by_type("ModelBlessing")
    if not blessings:
        return None
    message = max(blessings, key=lambda a: a.id).custom_properties.get(GATE_MESSAGE)
    return message.string_value if message and message.string_value else None


def summary_lines(config: PipelineConfig) -> List[str]:
    """What the last run did, the gate's decision (which condition failed), its micro-F1 and where the model went."""
    metadata = metadata_path(config.locations.pipeline_root)
    lines = ["components:"] + [f"  {e.component:32s} {e.state:9s} {e.seconds:7.1f} s" for e in runs.last_run(metadata)]
    pushed = latest_pushed_model(config.locations.serving_dir)
    blessed = runs.latest_blessing(metadata)
    gate, decision = config.gate, gate_message(metadata)
    # The blessing names each condition's value and the failed ones; an older one only says yes or no.
    lines.append(
        f"evaluator: {decision}"
        if decision
        else f"evaluator: {'blessed' if blessed else 'NOT blessed'} (gate: micro-F1 >= {gate.micro_f1_lower_bound}, "
        f"above the trivial baseline + {gate.baseline_margin} and not worse than the last blessed model)"
    )
    from cli.report import comparison_lines

    lines += comparison_lines(metadata)
    if config.tune.tune:
        from cli.tuning import tuning_lines

        lines += tuning_lines(runs.latest_output_uri(metadata, "Tuner", "TunerResults"))
    trainer_model = runs.latest_artifact_uri(metadata, "Model")
    if trainer_model:
        from trainer.rules import format_report

        lines += format_report(read_thresholds(os.path.join(trainer_model, "Format-Serving")))
    from cli import span_stats

    read = span_stats.last_run_row(metadata)
    if read:
        lines.append(f"data: {span_stats.span_line(read)}")
    lines.append(
        f"pushed model: {pushed}"
        if pushed and blessed
        else f"no model pushed by this run; newest pushed: {pushed or 'none'}"
    )
    return lines


def demo_data_ready(workdir: str, num_images: int) -> bool:
    """Whether ``workdir/data`` already holds all ``num_images`` demo images, downloaded."""
    try:
        with open(os.path.join(Workdir(workdir).data, "summary.json")) as f:
            splits = json.load(f)["splits"].values()
    except (OSError, ValueError, KeyError):
        return False
    return sum(s["records"] for s in splits) == num_images and all(s["ok"] == s["records"] for s in splits)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if not args.data:
        demo_spans = (
            spans.numbers(os.listdir(Workdir(args.workdir).data)) if os.path.isdir(Workdir(args.workdir).data) else []
        )
        if demo_spans and not args.redownload:
            print(
                f"reusing the demo's spans {demo_spans} in {Workdir(args.workdir).data} "
                "(imat demo --spans K wrote them)"
            )
        elif demo_data_ready(args.workdir, args.num_images) and not args.redownload:
            # Downloading again would serve on a new port, change every URL and so every cache key.
            print(f"reusing the demo data in {Workdir(args.workdir).data} (--redownload to fetch it again)")
        else:
            from cli.demo import download_demo

            download_demo(args.workdir, args.num_images)
    config = build_config(args)
    check_weights(config)
    from pipeline import local_runner
    from cli import logs

    with logs.component_progress():
        config = local_runner.run(config)
    print("\n".join(summary_lines(config)))
