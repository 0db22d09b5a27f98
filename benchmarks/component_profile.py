"""Time and peak memory of each pipeline component on the embedded demo data.

  .venv/bin/python benchmarks/component_profile.py --work /tmp/imat-profile [--num_images 300]

Runs the demo exactly as ``imat run`` does (download, then the TFX DAG on the local runner,
caching off so every component executes), sampling the process's resident memory every
0.2 s. The local runner executes components one after another in this process, so each
component's figure is the peak resident memory of the whole process while it ran (memory
that earlier components left allocated included), and its growth over the level it started at.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)
from imat_common.workdir import Workdir, metadata_path


def main(argv=None):
    from pipeline import local_runner
    from cli import runs
    from cli.demo import download_demo
    from pipeline.config import demo_config
    from imat_common.features import load_label_map

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/imat-profile")
    parser.add_argument("--num_images", type=int, default=300)
    args = parser.parse_args(argv)
    from scale_benchmark import Sampler

    with Sampler() as sampler:
        start = time.time()
        download_demo(args.work, args.num_images)
        downloaded = time.time()
        config = demo_config(args.work, load_label_map(Workdir(args.work).label_map).num_labels)
        local_runner.run(config.with_settings(enable_cache=False))
    metadata = metadata_path(config.locations.pipeline_root)
    rows = [("download job", start, downloaded - start)]
    rows += [(e.component, e.started, e.seconds) for e in runs.last_run(metadata)]
    print(f"{'component':32s} {'seconds':>8s} {'peak RSS MB':>12s} {'growth MB':>10s}")
    for name, began, seconds in rows:
        window = [rss for t, rss, _ in sampler.samples if began <= t <= began + seconds + 0.2]
        before = [rss for t, rss, _ in sampler.samples if t < began]
        base = before[-1] if before else (window[0] if window else 0)
        peak = max(window) if window else base
        print(f"{name:32s} {seconds:8.1f} {peak / 2**20:12.0f} {(peak - base) / 2**20:10.0f}")
    print(f"{'whole run':32s} {time.time() - start:8.1f} {max(r for _, r, _ in sampler.samples) / 2**20:12.0f}")


if __name__ == "__main__":
    main()
