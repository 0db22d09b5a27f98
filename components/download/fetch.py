"""Fetches image URLs safely, many at a time, with retries only where they can help.

asyncio keeps hundreds of requests in flight per worker at little cost, so a worker's CPU
(JPEG decode, resize, encode, done in a thread pool where Pillow and OpenCV release the GIL) is the
limit rather than its waiting on the network.
"""

import asyncio
import dataclasses
import functools
import random
import re
import time
from typing import Optional, Tuple
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from components.download import netguard
from components.download.budget import ByteBudget
from components.download.records import ALLOWED_SCHEMES

REDIRECT_CODES = (301, 302, 303, 307, 308)
# Content types servers send for images; HTML error pages and the like are refused.
BINARY_TYPES = ("application/octet-stream", "binary/octet-stream")
OPT_OUT = re.compile(r"\bno(?:image)?ai\b", re.IGNORECASE)
DEFAULT_USER_AGENT = (
    "imat-fashion-tfx/0.1 (image dataset downloader for model training; honours X-Robots-Tag noai/noimageai)"
)
# Outcomes a later attempt may cure: what the fetch retries, and what --retry_failed fetches again.
RETRYABLE_OUTCOMES = ("timeout", "connection_error")


def retryable_http(code: int) -> bool:
    """429 and every 5xx: the server may answer later; 4xx will not change."""
    return code == 429 or 500 <= code <= 599


def is_retryable(status: dict) -> bool:
    """Whether an image's status line records an outcome a later run may cure."""
    return status["status"] in RETRYABLE_OUTCOMES or (
        status["status"] == "http_error" and retryable_http(status.get("http_status", 0))
    )


@dataclasses.dataclass(frozen=True)
class FetchSettings:
    deadline_s: float = 60.0  # total per image: every URL, attempt, redirect and backoff
    attempt_timeout_s: float = 20.0  # per attempt, so a stalled attempt can be retried
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3
    retries: int = 2  # extra attempts after the first, for timeouts, 5xx and 429
    backoff_s: float = 0.5  # first backoff; doubles each retry, full jitter
    concurrency: int = 64  # requests in flight per shard being downloaded
    per_host: int = 16  # of those, at most this many to one host
    max_inflight_bytes: int = 256 * 1024 * 1024  # bodies held at once per shard being downloaded
    user_agent: str = DEFAULT_USER_AGENT
    respect_opt_out: bool = True
    allow_private_networks: bool = False
    allowed_networks: Tuple[str, ...] = ()  # CIDRs fetched even with the guard on


@dataclasses.dataclass
class FetchResult:
    status: str  # "ok" or the failure: http_error, timeout, connection_error, too_large, bad_redirect,
    #              not_image, opted_out, blocked_address, bad_url
    reason: str = ""
    body: bytes = b""
    http_status: int = 0
    attempts: int = 0
    final_url: str = ""
    held_bytes: int = 0  # of the byte budget, held for ``body``; the caller releases it


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


def _check_hop(url: str, settings: FetchSettings) -> str:
    """The URL to request for this hop, after the scheme and address checks."""
    if not url.lower().startswith(ALLOWED_SCHEMES):
        raise _Failure("bad_redirect", f"redirect to a refused scheme: {url!r}")
    try:
        url = netguard.canonical_url(url)
        if not settings.allow_private_networks:
            netguard.check_literal(URL(url).raw_host or "", _networks(settings.allowed_networks))
    except netguard.BlockedAddress as e:
        raise _Failure("blocked_address", str(e)) from None
    except ValueError as e:
        raise _Failure("bad_url", f"cannot parse {url!r}: {e}") from None
    return url


@functools.lru_cache(maxsize=16)
def _networks(cidrs: Tuple[str, ...]):
    return tuple(netguard.parse_networks(cidrs))


async def _attempt(
    session: aiohttp.ClientSession, url: str, settings: FetchSettings, timeout: float, budget: ByteBudget
):
    """One attempt, following redirects by hand so each hop's scheme and address are checked.

    Returns (body, final URL, bytes of the budget held for the body).
    """
    url = _check_hop(url, settings)
    seen = {url}
    for _ in range(settings.max_redirects + 1):
        async with session.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status in REDIRECT_CODES:
                location = response.headers.get("Location", "")
                if not location:
                    raise _Failure("bad_redirect", f"HTTP {response.status} without Location", response.status)
                target = _check_hop(urljoin(url, location), settings)
                if target in seen:
                    raise _Failure("bad_redirect", f"redirect loop at {target}", response.status)
                seen.add(target)
                url = target
                continue
            if response.status != 200:
                raise _Failure(
                    "http_error",
                    f"HTTP {response.status}",
                    response.status,
                    retry=retryable_http(response.status),
                    retry_after=_retry_after(response.headers.get("Retry-After")),
                )
            # A server may send several X-Robots-Tag headers (noindex, then noai): every one counts.
            robots = ", ".join(response.headers.getall("X-Robots-Tag", ()))
            if settings.respect_opt_out and OPT_OUT.search(robots):
                raise _Failure("opted_out", f"X-Robots-Tag: {robots}", response.status)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type and not (content_type.startswith("image/") or content_type in BINARY_TYPES):
                raise _Failure("not_image", f"Content-Type {content_type}", response.status)
            # Without Content-Length the body may grow to the cap: hold that much until it is read.
            held = await budget.acquire(min(response.content_length or settings.max_bytes, settings.max_bytes))
            try:
                body = await _read_body(response, settings.max_bytes)
            except BaseException:
                budget.release(held)
                raise
            keep = min(len(body), held)
            budget.release(held - keep)
            return body, url, keep
    raise _Failure("bad_redirect", f"more than {settings.max_redirects} redirects")


def _classify(error: Exception, timeout: float) -> _Failure:
    if isinstance(error, asyncio.TimeoutError):
        return _Failure("timeout", f"no complete response within {timeout:.1f} s", retry=True)
    if isinstance(error, aiohttp.ClientConnectorError) and isinstance(error.os_error, netguard.BlockedAddress):
        return _Failure("blocked_address", str(error.os_error))
    if isinstance(error, aiohttp.InvalidURL):
        return _Failure("bad_url", f"invalid URL: {error}")
    return _Failure("connection_error", f"{type(error).__name__}: {error}", retry=True)


async def fetch(
    session: aiohttp.ClientSession, url: str, settings: FetchSettings, deadline: float, budget: ByteBudget
) -> FetchResult:
    """Fetches one URL before ``deadline``, retrying timeouts, 5xx and 429 with backoff.

    Args:
      session: from ``make_session``.
      url: http or https.
      settings: limits and policy.
      deadline: ``time.monotonic()`` value by which the image must be done (shared by its URLs).
      budget: bytes of bodies this worker may hold; an ok result holds ``held_bytes`` of it.

    Returns:
      The result; network and HTTP problems become its status, never an exception.
    """
    attempts = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return FetchResult(
                "timeout", f"deadline of {settings.deadline_s} s reached before {url}", attempts=attempts
            )
        attempts += 1
        timeout = min(settings.attempt_timeout_s, remaining)
        try:
            body, final_url, held = await _attempt(session, url, settings, timeout, budget)
            return FetchResult(
                "ok", body=body, http_status=200, attempts=attempts, final_url=final_url, held_bytes=held
            )
        except _Failure as e:
            failure = e
        except (asyncio.TimeoutError, aiohttp.ClientError) as e:
            failure = _classify(e, timeout)
        if not failure.retry or attempts > settings.retries:
            return FetchResult(failure.status, failure.reason, http_status=failure.http_status, attempts=attempts)
        delay = max(failure.retry_after, random.uniform(0, settings.backoff_s * 2 ** (attempts - 1)))
        if time.monotonic() + delay >= deadline:
            return FetchResult(
                failure.status,
                f"{failure.reason}; deadline of {settings.deadline_s} s reached",
                http_status=failure.http_status,
                attempts=attempts,
            )
        await asyncio.sleep(delay)


def make_session(settings: FetchSettings) -> aiohttp.ClientSession:
    """A session with the worker's limits, the address guard and an honest User-Agent. Call inside a loop."""
    resolver = (
        None if settings.allow_private_networks else netguard.GuardedResolver(_networks(settings.allowed_networks))
    )
    connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=settings.per_host, resolver=resolver)
    return aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": settings.user_agent}, auto_decompress=True, trust_env=False
    )
