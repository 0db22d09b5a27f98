"""``imat``: the project's command line.

  imat run         download the demo data (or use --data) and run the TFX pipeline locally
  imat predict     tag images with the last pushed model
  imat report      per-label metrics of the last evaluation, the decision rules, the label distribution
  imat submission  score a split (the competition's test file) in batch and write the submission CSV
  imat schema      write the curated schema from a label map, or check a schema file against one
  imat similar     the catalogue items most like an image or an item id (needs an index)
  imat index       embed a catalogue of TFRecords and build the similar-product index (Beam)
  imat compile     compile the pipeline for Vertex AI Pipelines / Kubeflow Pipelines v2
  imat submit      submit a compiled pipeline to Vertex AI or a KFP endpoint
  imat demo        generate the embedded demo data, serve it on loopback, download it
  imat demo-data   only generate the demo images, JSON and label map
  imat download    the download job (see ``imat download --help``)

  -v, --verbose    (before or after the command) the libraries' INFO logs too: TensorFlow, TFX,
                   Beam, absl; without it a command prints its own output, progress and warnings
"""
import argparse
import importlib
import os
import shutil
import sys
from typing import Callable, List, Optional, Sequence

from pipeline import logs

DEFAULT_WORKDIR = "imat-demo"
VERBOSE_FLAGS = ("-v", "--verbose")


def _demo_data(argv: List[str]) -> None:
    from pipeline import demo_data

    parser = argparse.ArgumentParser(prog="imat demo-data", description="Write the demo dataset.")
    parser.add_argument("--out", default=os.path.join(DEFAULT_WORKDIR, "source"))
    parser.add_argument("--num_images", type=int, default=300)
    parser.add_argument("--base_url", default="http://127.0.0.1:8765/",
                        help="where --out will be served, for the URLs in the JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    splits = demo_data.write_images(args.out, args.num_images, seed=args.seed)
    demo_data.write_json(args.out, args.base_url)
    print(f"wrote {args.num_images} images in {args.out} ({ {k: len(v) for k, v in splits.items()} }); "
          f"serve it with: python -m http.server {args.base_url.rsplit(':', 1)[-1].strip('/')} "
          f"--bind 127.0.0.1 --directory {args.out}")


def download_demo(workdir: str, num_images: int, seed: int = 0, extra: Sequence[str] = ()) -> dict:
    """Generates the demo data, serves it on loopback and downloads it into ``workdir/data``."""
    from components.download import job
    from pipeline import demo_data

    source, data = os.path.join(workdir, "source"), os.path.join(workdir, "data")
    splits = demo_data.write_images(source, num_images, seed=seed)
    print(f"demo data: {num_images} images ({ {k: len(v) for k, v in splits.items()} }) in {source}")
    # The loopback port differs per run, and with it every URL: start the download afresh.
    shutil.rmtree(data, ignore_errors=True)
    with demo_data.serve_folder(source) as base_url:
        paths = demo_data.write_json(source, base_url)
        print(f"serving {source} at {base_url}")
        summary = job.run([f"--input={name}={path}" for name, path in paths.items()]
                          + [f"--output={data}", f"--label_map={os.path.join(source, 'label_map.csv')}",
                             "--images_per_shard=100", "--allow_private_networks"] + list(extra))
    print(job.format_summary(summary))
    return summary


def _demo(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="imat demo", description="Generate the demo data, serve it on loopback and download it into TFRecords.")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
    parser.add_argument("--num_images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args, extra = parser.parse_known_args(argv)
    download_demo(args.workdir, args.num_images, args.seed, extra)


# Imported only when chosen: most commands pull in TensorFlow or Beam, `imat --help` should not.
_MODULES = {"run": "pipeline.run_command", "predict": "pipeline.predict", "report": "pipeline.report",
            "submission": "pipeline.submission", "schema": "pipeline.schema",
            "similar": "pipeline.similar_command", "index": "components.similar.embed_job",
            "compile": "kubeflow.compile_command", "submit": "kubeflow.submit", "download": "components.download.job"}


def _module_main(module: str) -> Callable[[List[str]], None]:
    return lambda argv: importlib.import_module(module).main(argv)


COMMANDS = {**{name: _module_main(module) for name, module in _MODULES.items()},
            "demo": _demo, "demo-data": _demo_data}


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    # The one global flag, anywhere on the line (`imat -v run`, `imat run -v`): no command has a -v.
    verbose = any(arg in VERBOSE_FLAGS for arg in argv)
    argv = [arg for arg in argv if arg not in VERBOSE_FLAGS]
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    logs.configure(verbose)
    from components.download.plan import PlanMismatchError
    from components.download.records import ManifestError
    from components.validation import DataValidationError
    from trainer.features import LabelMapError

    try:
        COMMANDS[argv[0]](argv[1:])
    except (ManifestError, LabelMapError, PlanMismatchError, DataValidationError) as e:
        # Bad input is the user's to fix: say what and where, without a traceback.
        print(f"imat {argv[0]}: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
