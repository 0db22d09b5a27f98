"""The Tuner's trials as lines for ``imat run``'s summary: best first, the run's own settings marked."""

import json
import os
from typing import List, Optional

RESULTS_FILE = "tuner_results.json"  # TFX's Tuner writes it: one row per completed trial, best first
SHOWN = 5


def read_results(results_uri: str) -> List[dict]:
    """The completed trials (``trial_id``, ``score``, the searched values), best first.

    Raises:
      ValueError: naming the file when it is not a list of trials.
    """
    path = os.path.join(results_uri, RESULTS_FILE)
    with open(path) as f:
        rows = json.load(f)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "trial_id" in r and "score" in r for r in rows):
        raise ValueError(f"{path}: not a list of trials with trial_id and score")
    return rows


def tuning_lines(results_uri: Optional[str]) -> List[str]:
    """The search's best trials and where the settings as given (the first trial) ranked."""
    if not results_uri or not os.path.exists(os.path.join(results_uri, RESULTS_FILE)):
        return []
    rows = read_results(results_uri)
    if not rows:
        return ["tuner: no trial completed (the Trainer trained the settings as given)"]
    first = min(rows, key=lambda r: int(r["trial_id"]))["trial_id"]
    lines = [f"tuner: {len(rows)} trials, scored by the chosen rule's out-of-fold micro-F1 on calibration, best first:"]
    for rank, row in enumerate(rows, start=1):
        if rank > SHOWN and row["trial_id"] != first:
            continue
        values = format_values({k: v for k, v in row.items() if k not in ("trial_id", "score")})
        mark = "  (the settings as given)" if row["trial_id"] == first else ""
        lines.append(f"  {rank:2d}. trial {row['trial_id']}  {row['score']:.3f}  {values}{mark}")
    return lines


def format_values(values: dict) -> str:
    """``name=value`` pairs, floats to 3 significant digits (a step of 0.1 comes back as 0.30000000000000004)."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
