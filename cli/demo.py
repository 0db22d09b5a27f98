"""``imat demo`` and ``imat demo-data``: the embedded demo catalogue, generated, served on
loopback and downloaded into TFRecords.

  imat demo --workdir imat-demo --num_images 300       # generate, serve, download
  imat demo-data --out imat-demo/source                # only the images, JSON and label map
"""

import argparse
import shutil
import sys
from typing import List, Optional, Sequence

from imat_common.workdir import DEFAULT_WORKDIR, Workdir


def download_demo(workdir: str, num_images: int, seed: int = 0, extra: Sequence[str] = ()) -> dict:
    """Generates the demo data, serves it on loopback and downloads it into ``workdir/data``."""
    from cli import demo_data
    from components.download import job

    work = Workdir(workdir)
    splits = demo_data.write_images(work.source, num_images, seed=seed)
    print(f"demo data: {num_images} images ({ {k: len(v) for k, v in splits.items()} }) in {work.source}")
    # The loopback port differs per run, and with it every URL: start the download afresh.
    shutil.rmtree(work.data, ignore_errors=True)
    with demo_data.serve_folder(work.source) as base_url:
        paths = demo_data.write_json(work.source, base_url)
        print(f"serving {work.source} at {base_url}")
        summary = job.run(
            [f"--input={name}={path}" for name, path in paths.items()]
            + [
                f"--output={work.data}",
                f"--label_map={work.label_map}",
                "--images_per_shard=100",
                "--allow_private_networks",
            ]
            + list(extra)
        )
    print(job.format_summary(summary))
    return summary


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
    args, extra = parser.parse_known_args(argv)
    from imat_common.beam_flags import flags_of
    from imat_common.errors import user_error
    from components.download import options

    # The leftovers are the download job's flags and Beam's: a typo is refused here, before the
    # demo data is generated, rather than warned about by Beam and dropped.
    try:
        options.parse_args(["--input=demo=x", "--output=x"] + extra, "imat demo", also_known=flags_of(parser))
    except options.UserError as e:
        raise user_error("demo", e) from None
    from components.download import job

    try:
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
