"""``imat submission``: score a split in batch and write the competition's submission CSV.

  imat submission                                  # demo: WORKDIR/data/test, newest pushed model
  imat submission --examples 'data/test/*.tfrecord.gz' --model serving/1700000000 --output submission.csv \\
      --labels source/test_labels.json             # also: micro-F1 of the three rules and the baseline
  imat submission ... --runner=DataflowRunner --project=... --temp_location=gs://...   # on Dataflow

The CSV has the header ``image_id,label_id`` and one row per image: its id, then the label ids
the model decides (its served rule), separated by spaces. With ``--labels`` (competition JSON
with ``annotations``) the command prints the submission's micro-F1, each decision rule's and
the trivial baseline's on those images, and writes them to ``<output>_scores.json``. A
labelled image with no example (not downloaded) counts as all its labels missed.

Batch inference is a Beam RunInference job (``cli/batch_scoring.py``) rather than TFX's
BulkInferrer: the test split stays outside the training pipeline (nothing in it ever sees
the test images), and any pushed model can score any split, here or on Dataflow.
"""

import argparse
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from trainer import rules
from imat_common.workdir import DEFAULT_WORKDIR, Workdir, model_or_newest
from imat_common.serving import read_thresholds


def read_labels(path: str) -> Dict[str, Tuple[int, ...]]:
    """Image id -> label ids from a competition JSON file's ``annotations``.

    Raises:
      ValueError: naming the file and record that cannot be read, or a file without annotations.
    """
    from apache_beam.io.filesystems import FileSystems

    from components.download.records import read_annotations

    def bad(record):
        raise ValueError(record.reason)

    labels = read_annotations(lambda: FileSystems.open(path), path, bad)
    if not labels:
        raise ValueError(f"{path}: no annotations (a labels file lists each image's labelId)")
    return labels


def read_submission_ids(path: str) -> Set[str]:
    """The image ids of a submission CSV."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        lines = f.read().decode("utf-8").splitlines()
    return {line.split(",", 1)[0] for line in lines[1:] if line}


def scores(counts: Mapping[str, object], labels: Mapping[str, Sequence[int]], submitted: Set[str]) -> dict:
    """Micro-F1 per rule from the job's counts; labelled images without a row add their labels as misses."""
    from cli.batch_scoring import SCORED, UNLABELLED

    missing = sorted(set(labels) - submitted)
    missed = sum(len(labels[i]) for i in missing)
    result = {
        "labelled_images": len(labels),
        "scored": int(counts.get(SCORED, 0)),
        "labelled_without_example": len(missing),
        "scored_without_labels": int(counts.get(UNLABELLED, 0)),
        "micro_f1": {},
    }
    for rule, value in counts.items():
        if isinstance(value, list):
            tp, fp, fn = value
            result["micro_f1"][rule] = rules.micro_f1([tp, fp, fn + missed])
    return result


def format_scores(result: dict, report: dict, labels_path: str) -> List[str]:
    f1 = result["micro_f1"]
    names = {
        "submission": f"the submission (served rule: {report['served_rule']})",
        rules.PER_LABEL: "per-label thresholds",
        rules.GLOBAL: f"one global threshold ({report['global_threshold']:.3f})",
        rules.FIXED: "0.5 for every label",
        rules.BASELINE: "baseline: most frequent train label per task",
    }
    lines = [
        f"micro-F1 on the {result['labelled_images']} labelled images of {labels_path}"
        + (
            f" ({result['labelled_without_example']} without an example: their labels count as missed)"
            if result["labelled_without_example"]
            else ""
        )
        + ":"
    ]
    lines += [f"  {names[rule]:46s} {f1[rule]:.3f}" for rule in names if rule in f1]
    if result["scored_without_labels"]:
        lines.append(f"  ({result['scored_without_labels']} scored images are not in the labels file: not counted)")
    return lines


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="imat submission",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
    parser.add_argument("--model", help="an exported model; default: the newest pushed in WORKDIR/serving")
    parser.add_argument("--examples", help="TFRecords of the split; default: WORKDIR/data/test/*.tfrecord.gz")
    parser.add_argument("--output", help="the submission CSV; default: WORKDIR/submission.csv")
    parser.add_argument("--labels", help="competition JSON with annotations for these images: print the scores")
    parser.add_argument("--batch_size", type=int, default=64, help="examples per model call")
    args, beam_args = parser.parse_known_args(argv)
    from imat_common.beam_flags import check_beam_args, flags_of

    # Beam would only warn about a misspelled flag and score with the defaults.
    check_beam_args("submission", beam_args, flags_of(parser))
    try:
        model_dir = model_or_newest(args.model, args.workdir)
    except FileNotFoundError as e:
        parser.error(str(e))
    examples = args.examples or os.path.join(Workdir(args.workdir).data, "test", "*.tfrecord.gz")
    output = args.output or os.path.join(args.workdir, "submission.csv")
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions

    from cli import batch_scoring

    if not tf.io.gfile.glob(examples):
        parser.error(f"no examples match {examples}")
    try:
        report = read_thresholds(model_dir)
        batch_scoring.rule_thresholds(report)
        labels = read_labels(args.labels) if args.labels else None
    except (OSError, ValueError) as e:
        parser.error(str(e))
    counts_path = os.path.splitext(output)[0] + "_counts.json"
    options = PipelineOptions(beam_args or ["--runner=FnApiRunner"])
    with beam.Pipeline(options=options) as pipeline:
        batch_scoring.score_split(pipeline, examples, model_dir, output, report, labels, counts_path, args.batch_size)
    submitted = read_submission_ids(output)
    print(f"wrote {output}: {len(submitted)} images, decided by {model_dir} (served rule: {report['served_rule']})")
    if labels is None:
        return {"output": output, "images": len(submitted)}
    with tf.io.gfile.GFile(counts_path) as f:
        counts = json.loads(f.read() or "{}")
    result = scores(counts, labels, submitted)
    result.update(output=output, images=len(submitted), model=model_dir, served_rule=report["served_rule"])
    with tf.io.gfile.GFile(os.path.splitext(output)[0] + "_scores.json", "w") as f:
        f.write(json.dumps(result, indent=1))
    print("\n".join(format_scores(result, report, args.labels)))
    return result
