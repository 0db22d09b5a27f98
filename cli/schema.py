"""``imat schema``: the curated schema (pipeline/schema.py) from a label map.

imat schema --label_map label_map.csv --output schema.pbtxt     # write it, then review and commit
imat schema --label_map label_map.csv --check schema.pbtxt      # CI: does the file match the label map?
imat schema --label_map label_map.csv --output schema.pbtxt --label_drift 0.05   # a looser drift stop

The drift thresholds (used when the data comes in spans) are measured defaults; spans smaller than a
few hundred train images need looser ones (docs/benchmarks.md, "Drift between spans").
"""

import argparse
import sys
from typing import List, Optional

from pipeline.schema import IMAGE_DRIFT, LABEL_DRIFT, TASK_DRIFT, build_schema, read_schema, schema_text


def main(argv: Optional[List[str]] = None) -> None:
    from imat_common.features import load_label_map

    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="imat schema",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--label_map", required=True, help="label_map.csv")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--output", help="write the schema here")
    action.add_argument("--check", help="exit 1 when this schema file differs from the label map's")
    parser.add_argument(
        "--label_drift",
        type=float,
        default=LABEL_DRIFT,
        help="largest L-infinity distance between two spans' label distributions (default %(default)s)",
    )
    parser.add_argument(
        "--task_drift",
        type=float,
        default=TASK_DRIFT,
        help="largest L-infinity distance between two spans' label distributions within one task (default %(default)s)",
    )
    parser.add_argument(
        "--image_drift",
        type=float,
        default=IMAGE_DRIFT,
        help="largest Jensen-Shannon divergence of image height, width and JPEG bytes (default %(default)s)",
    )
    args = parser.parse_args(argv)
    for flag in ("label_drift", "task_drift", "image_drift"):
        if not 0 < getattr(args, flag) <= 1:
            parser.error(f"--{flag} must be in (0, 1], got {getattr(args, flag)}")
    label_map = load_label_map(args.label_map)
    schema = build_schema(label_map, args.label_drift, args.image_drift, args.task_drift)
    if args.output:
        with open(args.output, "w") as f:
            f.write(schema_text(schema))
        print(f"wrote {args.output} ({len(schema.feature)} features, labels 1..{label_map.num_labels})")
        return
    if read_schema(args.check) != schema:
        print(
            f"imat schema: {args.check} differs from the schema of {args.label_map}; "
            f"regenerate it with --output and review the diff",
            file=sys.stderr,
        )
        sys.exit(1)
    print(f"{args.check} matches {args.label_map}")
