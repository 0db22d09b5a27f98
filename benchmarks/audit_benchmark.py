"""The label audit on injected noise: how many flipped labels ``imat audit`` finds, and how many it invents.

  .venv/bin/python benchmarks/audit_benchmark.py --work /tmp/imat-bench --share 0.05 --seeds 0 1 2

``--work`` is a finished ``benchmarks/pipeline_benchmark.py`` folder: its newest trained model and
its validation photos, which that model never trained on. The model scores the photos once; then,
per seed, ``--share`` of the photos get one label flipped (half removed, half added:
``cli.label_issues.flip_labels``), the audit runs on the noisy labels, and the benchmark prints
the precision and recall of the (photo, label) pairs it flags against the flipped ones, the
precision of its first 20 flags, and the precision a random guess of as many pairs would have.
The original labels are not clean either: an issue the audit finds in them counts against its
precision here. With ``--cleanlab`` (cleanlab importable, for instance
``pip install --target DIR cleanlab==2.7.1`` and ``PYTHONPATH=DIR``), cleanlab's
``find_label_issues(multi_label=True)`` runs on the same probabilities, compared by photos (it
flags photos, not labels).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

import numpy as np

from benchmarks.pipeline_benchmark import trained_model
from cli import audit, label_issues


def _precision(found_pairs, flipped) -> float:
    return len(set(found_pairs) & set(flipped)) / len(found_pairs) if found_pairs else float("nan")


def main(argv=None):
    import tensorflow as tf

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="a pipeline_benchmark.py --work folder")
    parser.add_argument("--share", type=float, default=0.05, help="share of photos with one label flipped")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cleanlab", action="store_true", help="also run cleanlab on the same probabilities")
    args = parser.parse_args(argv)
    if not 0 < args.share < 1:
        parser.error(f"--share must be between 0 and 1, got {args.share}")
    model_dir = trained_model(args.work)
    if not model_dir:
        parser.error(f"no trained model in {args.work}: run benchmarks/pipeline_benchmark.py --work {args.work}")
    _, label_lists, records = audit.read_split([os.path.join(args.work, "data", "validation", "*.tfrecord.gz")])
    probabilities, errors = audit.score(tf.saved_model.load(model_dir), records, 64)
    if any(errors):
        parser.error(f"the model could not score {sum(1 for e in errors if e)} validation photos")
    probabilities = np.stack(probabilities)
    clean = audit.multi_hot(label_lists, probabilities.shape[1])
    print(f"model {model_dir}\n{len(records)} validation photos, {clean.shape[1]} labels, {clean.sum()} given")
    unflipped = label_issues.find_label_issues(clean, probabilities)
    print(f"issues found in the labels as given (no flip): {len(unflipped)}")
    totals = []
    for seed in args.seeds:
        noisy, flipped = label_issues.flip_labels(clean, args.share, seed=seed)
        found = label_issues.find_label_issues(noisy, probabilities)
        precision, recall = label_issues.precision_recall(found, flipped)
        pairs = [(i.row, i.label) for i in found]
        top = _precision(pairs[:20], flipped)
        chance = len(flipped) / noisy.size
        line = (
            f"seed {seed}: {len(flipped)} flipped, {len(found)} flagged: precision {precision:.3f}, "
            f"recall {recall:.3f}, precision of the first 20 {top:.2f}, a random guess {chance:.4f}"
        )
        if args.cleanlab:
            from cleanlab.filter import find_label_issues

            mask = find_label_issues(
                labels=[list(np.flatnonzero(row)) for row in noisy], pred_probs=probabilities, multi_label=True
            )
            rows = {r for r, _ in flipped}
            theirs, ours = set(np.flatnonzero(mask)), {i.row for i in found}

            def by_photo(flagged):
                hits = len(flagged & rows)
                return hits / len(flagged) if flagged else float("nan"), hits / len(rows)

            line += "; by photo: ours {:.3f} / {:.3f}, cleanlab {:.3f} / {:.3f} (precision / recall)".format(
                *by_photo(ours), *by_photo(theirs)
            )
        print(line, flush=True)
        totals.append((precision, recall))
    mean = np.nanmean(np.array(totals), axis=0)
    print(f"mean over {len(totals)} seeds: precision {mean[0]:.3f}, recall {mean[1]:.3f}")


if __name__ == "__main__":
    main()
