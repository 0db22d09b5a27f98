"""A generated catalogue shaped like the competition's: 228 labels in 8 tasks, about 7 per image.

Used by ``scale_benchmark.py``. Two outputs:

* ``write_examples``: gzip TFRecord shards of tf.Examples in the download job's format
  (``<data_root>/<split>/part-*.tfrecord.gz``), as if the download had run, with small real
  JPEGs (a pool of generated pictures, so encoding them does not dominate the generation).
* ``write_competition_json``: the competition's JSON layout (``images`` with URLs,
  ``annotations`` with label ids), written as a stream, for timing the download job's plan.

Label counts per task follow the competition's shape (each image has a category and most have a
gender and a colour; material, pattern, style, neckline and sleeve are frequent but not always
given). Within a task, labels are drawn with Zipf(1) weights, a long tail as in the real data.
The numbers below are this generator's, chosen to give about 6.7 labels per image on average, near the
competition's density; they are not read from the competition's files.
"""

import gzip
import io
import json
import os
import random
from typing import Dict, Iterator, List, Sequence, Tuple

from components.download.tfrecord import serialize_example, write_records
from imat_common import features
from imat_common.features import Label

# task -> (number of labels, probability an image carries the task, mean count when it does)
TASKS: Dict[str, Tuple[int, float, float]] = {
    "category": (105, 1.00, 1.2),
    "color": (19, 0.95, 1.6),
    "gender": (3, 0.90, 1.0),
    "material": (34, 0.60, 1.3),
    "neckline": (11, 0.40, 1.0),
    "pattern": (28, 0.60, 1.2),
    "sleeve": (4, 0.50, 1.0),
    "style": (24, 0.70, 1.2),
}
NUM_LABELS = sum(size for size, _, _ in TASKS.values())  # 228
IMAGES_PER_SHARD = 1000


def label_table() -> List[Label]:
    """The 228 labels, ids 1..228, task by task."""
    labels, next_id = [], 1
    for task_id, (task, (size, _, _)) in enumerate(TASKS.items(), start=1):
        for k in range(size):
            labels.append(Label(next_id, task_id, f"{task}_{k}", task))
            next_id += 1
    return labels


class LabelSampler:
    """Draws one image's label ids with the per-task presence, counts and Zipf weights above."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)
        self._tasks = []
        first = 1
        for size, presence, mean_count in TASKS.values():
            ids = list(range(first, first + size))
            weights = [1.0 / (rank + 1) for rank in range(size)]
            self._rng.shuffle(ids)  # the frequent labels are not the lowest ids
            self._tasks.append((ids, weights, presence, mean_count))
            first += size

    def draw(self) -> List[int]:
        chosen = set()
        for ids, weights, presence, mean_count in self._tasks:
            if self._rng.random() >= presence:
                continue
            count = 1
            while count < len(ids) and self._rng.random() < (mean_count - 1.0) / mean_count:
                count += 1
            chosen.update(self._rng.choices(ids, weights, k=count))
        return sorted(chosen)


def jpeg_pool(count: int = 64, size: int = 96, seed: int = 0) -> List[bytes]:
    """Small JPEGs with smooth colour fields and noise: real decode work, a few KB each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(count):
        base = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize((size, size), Image.BILINEAR)
        pixels = np.asarray(image, np.int16) + rng.integers(-20, 20, size=(size, size, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=85)
        pool.append(buffer.getvalue())
    return pool


def _examples(split: str, count: int, seed: int, pool: Sequence[bytes]) -> Iterator[bytes]:
    import hashlib

    sampler, rng = LabelSampler(seed), random.Random(seed + 1)
    for i in range(count):
        jpeg = pool[rng.randrange(len(pool))]
        yield serialize_example(
            {
                features.IMAGE_ID_KEY: f"{split}-{i}".encode(),
                features.IMAGE_KEY: jpeg,
                features.HEIGHT_KEY: 96,
                features.WIDTH_KEY: 96,
                features.SHA256_KEY: hashlib.sha256(jpeg).hexdigest().encode(),
                features.URL_KEY: f"http://images.example/{split}/{i}.jpg".encode(),
                features.LABELS_KEY: sampler.draw(),
            }
        )


def write_examples(data_root: str, counts: Dict[str, int], seed: int = 0) -> Dict[str, int]:
    """Writes ``counts`` (split -> images) as gzip TFRecord shards; returns shards per split."""
    pool = jpeg_pool(seed=seed)
    shards = {}
    for offset, (split, count) in enumerate(sorted(counts.items())):
        folder = os.path.join(data_root, split)
        os.makedirs(folder, exist_ok=True)
        examples = _examples(split, count, seed + 10 * offset, pool)
        total = -(-count // IMAGES_PER_SHARD)
        for index in range(total):
            n = min(IMAGES_PER_SHARD, count - index * IMAGES_PER_SHARD)
            with gzip.open(os.path.join(folder, f"part-{index:05d}-of-{total:05d}.tfrecord.gz"), "wb") as f:
                write_records(f, (next(examples) for _ in range(n)))
        shards[split] = total
    return shards


def write_competition_json(path: str, count: int, seed: int = 0) -> None:
    """The competition's JSON layout for ``count`` images, written as a stream (no list in memory).

    Each image gets one URL of the length the competition's URLs have (about 90 characters).
    """
    sampler = LabelSampler(seed)
    with open(path, "w") as f:
        f.write('{"images": [')
        for i in range(1, count + 1):
            sep = "," if i > 1 else ""
            f.write(
                f'{sep}{{"url": ["https://contestimg.wish.example/api/webimage/{i:024x}-large.jpg"], "imageId": "{i}"}}'
            )
        f.write('], "annotations": [')
        for i in range(1, count + 1):
            sep = "," if i > 1 else ""
            f.write(f'{sep}{{"labelId": {json.dumps([str(k) for k in sampler.draw()])}, "imageId": "{i}"}}')
        f.write("]}")
