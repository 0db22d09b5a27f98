"""A byte budget for asyncio: bounds the memory held by response bodies, not only their number."""

import asyncio
import collections
from typing import Deque, Tuple


class ByteBudget:
    """Grants byte reservations in arrival order while their sum stays within ``limit``.

    A request larger than the whole budget is granted ``limit`` bytes once it is alone,
    so nothing waits forever.
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"a byte budget must be positive, got {limit}")
        self.limit = limit
        self.used = 0
        self._waiters: Deque[Tuple[int, asyncio.Future]] = collections.deque()

    async def acquire(self, size: int) -> int:
        """Waits until ``size`` bytes fit; returns the bytes granted (release exactly those)."""
        size = max(0, min(size, self.limit))
        if not self._waiters and self.used + size <= self.limit:
            self.used += size
            return size
        waiter = (size, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            if waiter[1].done() and not waiter[1].cancelled():
                self.release(size)  # granted just as the caller was cancelled
            else:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                self._wake()
            raise
        return size

    def release(self, size: int) -> None:
        """Returns bytes granted by ``acquire``."""
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        # In order: a large request at the head is not starved by a stream of small ones.
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            size, future = self._waiters.popleft()
            if not future.done():
                self.used += size
                future.set_result(None)
