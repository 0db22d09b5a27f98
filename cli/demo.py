"""``imat demo`` and ``imat demo-data``: the embedded demo catalogue, generated, served on
loopback and downloaded into TFRecords.

  imat demo --workdir imat-demo --num_images 300       # generate, serve, download into data/
  imat demo --spans 3 --num_images 300                 # 3 spans into data/span-1..3, the last shifted
  imat demo --spans 3 --no_shift                       # 3 spans from one distribution
  imat demo-data --out imat-demo/source                # only the images, JSON and label map

With ``--spans K`` (K >= 1) each span has ``--num_images`` images of its own (ids do not repeat
across spans), written to ``source/span-<n>/`` and downloaded into ``data/span-<n>/``, with
one label map, ``source/label_map.csv``. With K >= 2 the last span is drawn shifted, as a
catalogue changes (``demo_data.Shift``: one colour frequent, darker photos); ``--no_shift``
draws every span alike.
"""

import argparse
import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence

from imat_common.workdir import DEFAULT_WORKDIR, Workdir


def _counts(splits: dict) -> dict:
    return {name: len(items) for name, items in splits.items()}


def _download(job, paths: Dict[str, str], output: str, label_map: str, extra: Sequence[str]) -> dict:
    summary = job.run(
        [f"--input={name}={path}" for name, path in paths.items()]
        + [f"--output={output}", f"--label_map={label_map}", "--images_per_shard=100", "--allow_private_networks"]
        + list(extra)
    )
    print(job.format_summary(summary))
    return summary


def download_demo(workdir: str, num_images: int, seed: int = 0, extra: Sequence[str] = ()) -> dict:
    """Generates the demo data, serves it on loopback and downloads it into ``workdir/data``."""
    from cli import demo_data
    from components.download import job

    work = Workdir(workdir)
    splits = demo_data.write_images(work.source, num_images, seed=seed)
    print(f"demo data: {num_images} images ({_counts(splits)}) in {work.source}")
    # The loopback port differs per run, and with it every URL: start the download afresh.
    shutil.rmtree(work.data, ignore_errors=True)
    with demo_data.serve_folder(work.source) as base_url:
        paths = demo_data.write_json(work.source, base_url)
        print(f"serving {work.source} at {base_url}")
        return _download(job, paths, work.data, work.label_map, extra)


def download_demo_spans(
    workdir: str, num_images: int, num_spans: int, seed: int = 0, shift=None, extra: Sequence[str] = ()
) -> Dict[int, dict]:
    """Generates ``num_spans`` spans of demo data in ``workdir/source/span-<n>`` (the last drawn
    with ``shift``, a ``demo_data.Shift`` or None), serves them on loopback and downloads each
    into ``workdir/data/span-<n>``; returns span -> the download job's summary."""
    from cli import demo_data
    from components.download import job

    work = Workdir(workdir)
    spans = demo_data.write_spans(work.source, num_spans, num_images, seed=seed, shift=shift)
    for span, splits in spans.items():
        drawn = demo_data.span_shift(span, num_spans, shift)
        print(
            f"demo data: span {span}: {num_images} images ({_counts(splits)}) in "
            f"{demo_data.span_folder(work.source, span)}{f', shifted: {drawn}' if drawn else ''}"
        )
    # The loopback port differs per run, and with it every URL: start the download afresh.
    shutil.rmtree(work.data, ignore_errors=True)
    summaries = {}
    with demo_data.serve_folder(work.source) as base_url:
        print(f"serving {work.source} at {base_url}")
        for span in spans:
            folder = demo_data.span_folder(work.source, span)
            paths = demo_data.write_json(folder, f"{base_url}{os.path.basename(folder)}/")
            output = demo_data.span_folder(work.data, span)
            summaries[span] = _download(job, paths, output, work.label_map, extra)
    return summaries


def main(argv: Optional[List[str]] = None) -> None:
    """``imat demo``: flags it does not know go to the download job."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="imat demo",
        description="Generate the demo data, serve it on loopback and download it into TFRecords.",
    )
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
    parser.add_argument("--num_images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--spans",
        type=int,
        default=0,
        help="0: one dataset in data/; K >= 1: K spans of --num_images each in data/span-1..K, the last shifted",
    )
    parser.add_argument(
        "--no_shift", action="store_true", help="with --spans K >= 2, draw the last span like the others"
    )
    args, extra = parser.parse_known_args(argv)
    from imat_common.beam_flags import flags_of
    from imat_common.errors import user_error
    from components.download import options

    if args.spans < 0:
        raise user_error("demo", f"--spans takes a whole number >= 0, got {args.spans}")
    if any(arg == "--span" or arg.startswith("--span=") for arg in extra):
        # The download job's --span would move the demo's output: the demo names its span folders itself.
        raise user_error("demo", "--span is the download job's; the demo writes K spans with --spans K")

    # The leftovers are the download job's flags and Beam's: a typo is refused here, before the
    # demo data is generated, rather than warned about by Beam and dropped.
    try:
        options.parse_args(["--input=demo=x", "--output=x"] + extra, "imat demo", also_known=flags_of(parser))
    except options.UserError as e:
        raise user_error("demo", e) from None
    from components.download import job

    try:
        if args.spans:
            from cli import demo_data

            shift = None if args.no_shift else demo_data.Shift()
            download_demo_spans(args.workdir, args.num_images, args.spans, args.seed, shift, extra)
        else:
            download_demo(args.workdir, args.num_images, args.seed, extra)
    except (job.TooFewStored, job.OutputError) as e:
        # The demo downloads afresh each time: its one line needs no resume command.
        print(f"imat demo: error: {e}", file=sys.stderr)
        sys.exit(job.EXIT_TOO_FEW_STORED if isinstance(e, job.TooFewStored) else job.EXIT_OUTPUT_ERROR)


def data_main(argv: Optional[List[str]] = None) -> None:
    """``imat demo-data``: writes the images, the competition JSON and the label map."""
    from cli import demo_data

    parser = argparse.ArgumentParser(allow_abbrev=False, prog="imat demo-data", description="Write the demo dataset.")
    parser.add_argument("--out", default=Workdir().source)
    parser.add_argument("--num_images", type=int, default=300)
    parser.add_argument(
        "--base_url", default="http://127.0.0.1:8765/", help="where --out will be served, for the URLs in the JSON"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    splits = demo_data.write_images(args.out, args.num_images, seed=args.seed)
    demo_data.write_json(args.out, args.base_url)
    print(
        f"wrote {args.num_images} images in {args.out} ({ {k: len(v) for k, v in splits.items()} }); "
        f"serve it with: python -m http.server {args.base_url.rsplit(':', 1)[-1].strip('/')} "
        f"--bind 127.0.0.1 --directory {args.out}"
    )
