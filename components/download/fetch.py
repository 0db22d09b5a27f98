"""Fetches image URLs safely, many at a time, with retries only where they can help.

asyncio keeps hundreds of requests in flight per worker at little cost, so a worker's CPU
(JPEG decode, resize, encode, done in a thread pool where Pillow releases the GIL) is the
limit rather than its waiting on the network.
"""
import asyncio
import dataclasses
import random
import re
import time
from typing import Optional
from urllib.parse import urljoin

import aiohttp

from components.download.records import ALLOWED_SCHEMES

REDIRECT_CODES = (301, 302, 303, 307, 308)
RETRY_CODES = frozenset({429, 500, 502, 503, 504})
# Content types servers send for images; HTML error pages and the like are refused.
BINARY_TYPES = ("application/octet-stream", "binary/octet-stream")
OPT_OUT = re.compile(r"\bno(?:image)?ai\b", re.IGNORECASE)
DEFAULT_USER_AGENT = ("imat-fashion-tfx/0.1 (image dataset downloader for model training; "
                      "honours X-Robots-Tag noai/noimageai)")


@dataclasses.dataclass(frozen=True)
class FetchSettings:
    deadline_s: float = 60.0  # total per image: every attempt, redirect and backoff
    attempt_timeout_s: float = 20.0  # per attempt, so a stalled attempt can be retried
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3
    retries: int = 2  # extra attempts after the first, for timeouts, 5xx and 429
    backoff_s: float = 0.5  # first backoff; doubles each retry, full jitter
    concurrency: int = 64  # requests in flight per worker process
    per_host: int = 16  # of those, at most this many to one host
    user_agent: str = DEFAULT_USER_AGENT
    respect_opt_out: bool = True


@dataclasses.dataclass
class FetchResult:
    status: str  # "ok" or the failure: http_error, timeout, connection_error, too_large, bad_redirect, not_image, opted_out
    reason: str = ""
    body: bytes = b""
    http_status: int = 0
    attempts: int = 0
    final_url: str = ""


class _Failure(Exception):
    def __init__(self, status: str, reason: str, http_status: int = 0, retry: bool = False, retry_after: float = 0.0):
        super().__init__(reason)
        self.status, self.reason, self.http_status = status, reason, http_status
        self.retry, self.retry_after = retry, retry_after


def _retry_after(value: Optional[str]) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0  # an HTTP date: fall back to our own backoff


async def _read_body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    length = response.content_length
    if length is not None and length > max_bytes:
        raise _Failure("too_large", f"Content-Length {length} is over the cap of {max_bytes} bytes", response.status)
    chunks, total = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise _Failure("too_large", f"body is over the cap of {max_bytes} bytes", response.status)
        chunks.append(chunk)
    return b"".join(chunks)


async def _attempt(session: aiohttp.ClientSession, url: str, settings: FetchSettings, timeout: float):
    """One attempt, following redirects by hand so each hop's scheme is checked."""
    seen = {url}
    for _ in range(settings.max_redirects + 1):
        async with session.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status in REDIRECT_CODES:
                location = response.headers.get("Location", "")
                if not location:
                    raise _Failure("bad_redirect", f"HTTP {response.status} without Location", response.status)
                target = urljoin(url, location)
                if not target.lower().startswith(ALLOWED_SCHEMES):
                    raise _Failure("bad_redirect", f"redirect to a refused scheme: {target!r}", response.status)
                if target in seen:
                    raise _Failure("bad_redirect", f"redirect loop at {target}", response.status)
                seen.add(target)
                url = target
                continue
            if response.status != 200:
                raise _Failure("http_error", f"HTTP {response.status}", response.status,
                               retry=response.status in RETRY_CODES,
                               retry_after=_retry_after(response.headers.get("Retry-After")))
            robots = response.headers.get("X-Robots-Tag", "")
            if settings.respect_opt_out and OPT_OUT.search(robots):
                raise _Failure("opted_out", f"X-Robots-Tag: {robots}", response.status)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type and not (content_type.startswith("image/") or content_type in BINARY_TYPES):
                raise _Failure("not_image", f"Content-Type {content_type}", response.status)
            return await _read_body(response, settings.max_bytes), url
    raise _Failure("bad_redirect", f"more than {settings.max_redirects} redirects")


async def fetch(session: aiohttp.ClientSession, url: str, settings: FetchSettings) -> FetchResult:
    """Fetches one URL within the total deadline, retrying timeouts, 5xx and 429 with backoff.

    Never raises for network or HTTP problems: they become the result's status.
    """
    deadline = time.monotonic() + settings.deadline_s
    attempts = 0
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            body, final_url = await _attempt(session, url, settings, min(settings.attempt_timeout_s, remaining))
            return FetchResult("ok", body=body, http_status=200, attempts=attempts, final_url=final_url)
        except _Failure as e:
            failure = e
        except asyncio.TimeoutError:
            failure = _Failure("timeout", f"no complete response within {min(settings.attempt_timeout_s, remaining):.1f} s", retry=True)
        except aiohttp.ClientError as e:
            failure = _Failure("connection_error", f"{type(e).__name__}: {e}", retry=True)
        if not failure.retry or attempts > settings.retries:
            return FetchResult(failure.status, failure.reason, http_status=failure.http_status, attempts=attempts)
        delay = max(failure.retry_after, random.uniform(0, settings.backoff_s * 2 ** (attempts - 1)))
        if time.monotonic() + delay >= deadline:
            return FetchResult(failure.status, f"{failure.reason}; deadline of {settings.deadline_s} s reached",
                               http_status=failure.http_status, attempts=attempts)
        await asyncio.sleep(delay)


def make_session(settings: FetchSettings) -> aiohttp.ClientSession:
    """A session with the worker's concurrency limits and an honest User-Agent. Call inside a loop."""
    connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=settings.per_host)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": settings.user_agent},
                                 auto_decompress=True, trust_env=False)
