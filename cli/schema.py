"""``imat schema``: the curated schema (pipeline/schema.py) from a label map.

imat schema --label_map label_map.csv --output schema.pbtxt     # write it, then review and commit
imat schema --label_map label_map.csv --check schema.pbtxt      # CI: does the file match the label map?
"""

import argparse
import sys
from typing import List, Optional

from pipeline.schema import build_schema, read_schema, schema_text


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
    args = parser.parse_args(argv)
    schema = build_schema(load_label_map(args.label_map))
    if args.output:
        with open(args.output, "w") as f:
            f.write(schema_text(schema))
        print(f"wrote {args.output} ({len(schema.feature)} features, labels 1..{schema.feature[-1].int_domain.max})")
        return
    if read_schema(args.check) != schema:
        print(
            f"imat schema: {args.check} differs from the schema of {args.label_map}; "
            f"regenerate it with --output and review the diff",
            file=sys.stderr,
        )
        sys.exit(1)
    print(f"{args.check} matches {args.label_map}")
