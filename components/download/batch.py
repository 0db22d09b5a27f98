"""Fetches and processes a batch of image records concurrently: one event loop per shard.

Memory stays bounded on three counts: requests in flight (``concurrency``), requests per
host (``per_host``) and bytes of bodies held until the thread pool has processed them
(``max_inflight_bytes``): when decoding falls behind, fetching waits instead of piling up bodies.
"""

import asyncio
import concurrent.futures
import hashlib
import os
import threading
import time
from typing import Callable, Dict, Iterable, Optional
from urllib.parse import urlsplit

from components.download import fetch as fetch_lib
from components.download.budget import ByteBudget
from components.download.images import ImageError, ImageSettings, process_image
from components.download.records import ImageRecord
from components.download.redact import redact_text, redact_url
from components.download.tfrecord import serialize_example
from imat_common import features

# Pillow and OpenCV release the GIL while decoding, resizing and encoding, so threads use every core.
_CPU_POOL: Optional[concurrent.futures.ThreadPoolExecutor] = None
_CPU_POOL_LOCK = threading.Lock()


def _cpu_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _CPU_POOL
    with _CPU_POOL_LOCK:
        if _CPU_POOL is None:
            _CPU_POOL = concurrent.futures.ThreadPoolExecutor(
                max_workers=os.cpu_count() or 2, thread_name_prefix="imat-image"
            )
        return _CPU_POOL


def to_example(record: ImageRecord, jpeg: bytes, width: int, height: int, url: str) -> bytes:
    """The serialized tf.Example of one stored image."""
    return serialize_example(
        {
            features.IMAGE_ID_KEY: record.image_id.encode("utf-8"),
            features.IMAGE_KEY: jpeg,
            features.HEIGHT_KEY: height,
            features.WIDTH_KEY: width,
            features.SHA256_KEY: hashlib.sha256(jpeg).hexdigest().encode("ascii"),
            features.URL_KEY: url.encode("utf-8"),
            features.LABELS_KEY: list(record.labels),
        }
    )


class _Limits:
    """Requests in flight per worker and per host, and the byte budget of held bodies."""

    def __init__(self, settings: fetch_lib.FetchSettings):
        self.all = asyncio.Semaphore(settings.concurrency)
        self.budget = ByteBudget(settings.max_inflight_bytes)
        self._per_host: Dict[str, asyncio.Semaphore] = {}
        self._per_host_limit = settings.per_host

    def host(self, url: str) -> asyncio.Semaphore:
        netloc = urlsplit(url).netloc.lower()
        if netloc not in self._per_host:
            self._per_host[netloc] = asyncio.Semaphore(self._per_host_limit)
        return self._per_host[netloc]


async def _download_one(session, limits: _Limits, record: ImageRecord, fetch_settings, image_settings):
    """Returns (status dict, serialized example or None)."""
    result = None
    async with limits.all:
        # One deadline for the image: fallback URLs share it rather than each getting a new one.
        deadline = time.monotonic() + fetch_settings.deadline_s
        for url in record.urls:  # later URLs are fallbacks for earlier ones
            async with limits.host(url):
                result = await fetch_lib.fetch(session, url, fetch_settings, deadline, limits.budget)
            if result.status == "ok":
                break
    # The full URL was only for fetching: what is written keeps no user info or signature.
    status = {
        "image_id": record.image_id,
        "url": redact_url(result.final_url or record.urls[-1]),
        "labels": list(record.labels),
        "status": result.status,
        "reason": redact_text(result.reason),
        "http_status": result.http_status,
        "attempts": result.attempts,
        "bytes": len(result.body),
    }
    if result.status != "ok":
        return status, None
    try:
        stored = await asyncio.get_running_loop().run_in_executor(
            _cpu_pool(), process_image, result.body, image_settings
        )
    except ImageError as e:
        status.update(status=e.status, reason=redact_text(str(e)))
        return status, None
    finally:
        limits.budget.release(result.held_bytes)
    example = to_example(record, stored.jpeg, stored.width, stored.height, redact_url(result.final_url))
    status.update(stored_bytes=len(stored.jpeg), width=stored.width, height=stored.height)
    return status, example


def fetch_all(
    records: Iterable[ImageRecord],
    fetch_settings: fetch_lib.FetchSettings,
    image_settings: ImageSettings,
    on_result: Callable[[dict, Optional[bytes]], None],
) -> None:
    """Fetches and processes every record, calling ``on_result(status, example or None)`` as each finishes."""

    async def run():
        limits = _Limits(fetch_settings)
        async with fetch_lib.make_session(fetch_settings) as session:
            tasks = [
                asyncio.ensure_future(_download_one(session, limits, r, fetch_settings, image_settings))
                for r in records
            ]
            for done in asyncio.as_completed(tasks):
                on_result(*await done)

    asyncio.run(run())
