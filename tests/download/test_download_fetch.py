"""The fetch layer on its own: one deadline per image across its URLs, and the byte budget."""

from components.download import batch
from components.download.budget import ByteBudget
from components.download.fetch import FetchSettings
from components.download.images import ImageSettings
from components.download.records import ImageRecord
from tests.fault_server import STALL_S


def _fetch(records, settings):
    results = []
    batch.fetch_all(records, settings, ImageSettings(max_size=100), lambda status, example: results.append(status))
    return {r["image_id"]: r for r in results}


def test_fallback_urls_share_the_image_deadline(fault_server):
    urls = tuple(fault_server.url(f"/stall/{n}") for n in range(3))
    settings = FetchSettings(deadline_s=1.5, attempt_timeout_s=1.0, retries=0, allow_private_networks=True)
    status = _fetch([ImageRecord("1", urls, ())], settings)["1"]
    assert status["status"] == "timeout"
    # Each URL with a deadline of its own would try all three (1 s each); one deadline of 1.5 s
    # stops during the second. Counted in requests, not seconds: a busy machine cannot fail it.
    assert settings.deadline_s < 2 * settings.attempt_timeout_s < STALL_S
    assert fault_server.hits["/stall/0"] == 1 and fault_server.hits["/stall/1"] == 1
    assert fault_server.hits["/stall/2"] == 0


def test_bodies_held_stay_within_the_byte_budget(fault_server, monkeypatch):
    peaks = []

    class Recording(ByteBudget):
        def _wake(self):
            super()._wake()
            peaks.append(self.used)

        async def acquire(self, size):
            granted = await super().acquire(size)
            peaks.append(self.used)
            return granted

    monkeypatch.setattr(batch, "ByteBudget", Recording)
    body = len(fault_server.good)
    settings = FetchSettings(
        max_inflight_bytes=3 * body, max_bytes=3 * body, concurrency=16, allow_private_networks=True
    )
    records = [ImageRecord(str(i), (fault_server.url(f"/good/{i}.jpg"),), ()) for i in range(30)]
    results = _fetch(records, settings)
    assert all(r["status"] == "ok" for r in results.values()) and len(results) == 30
    assert max(peaks) <= 3 * body and max(peaks) >= 2 * body  # the budget was both used and respected
    assert peaks[-1] == 0  # every byte held was released
