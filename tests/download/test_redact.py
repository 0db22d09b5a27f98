"""Secrets in image URLs (user info, signatures, tokens) never reach the output folder, the logs or errors."""

import glob
import logging
import os
import zlib

import pytest

from components.download import job
from components.download.redact import redact_text, redact_url
from tests.helpers import FAST, example_ids, read_examples, write_json
from imat_common import features


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://user:pw@host/a.jpg", "http://redacted@host/a.jpg"),
        ("https://user@host:8443/a.jpg", "https://redacted@host:8443/a.jpg"),
        (
            "https://storage.googleapis.com/b/a.jpg?X-Goog-Algorithm=GOOG4&X-Goog-Credential=sa%40p.iam"
            "&X-Goog-Signature=ab12&X-Goog-Expires=600",
            "https://storage.googleapis.com/b/a.jpg?X-Goog-Algorithm=GOOG4&X-Goog-Credential=redacted"
            "&X-Goog-Signature=redacted&X-Goog-Expires=600",
        ),
        (
            "https://s3.amazonaws.com/b/a.jpg?X-Amz-Security-Token=t0k&X-Amz-Signature=s1g&X-Amz-Credential=AK",
            "https://s3.amazonaws.com/b/a.jpg?X-Amz-Security-Token=redacted&X-Amz-Signature=redacted"
            "&X-Amz-Credential=redacted",
        ),
        (
            "http://h/a.jpg?sig=1&w=300&token=2&key=3&access_token=4",
            "http://h/a.jpg?sig=redacted&w=300&token=redacted&key=redacted&access_token=redacted",
        ),
        ("http://h/a.jpg?SIGNATURE=x&My-Api-Key=y", "http://h/a.jpg?SIGNATURE=redacted&My-Api-Key=redacted"),
        ("http://h/a.jpg#access_token=x", "http://h/a.jpg#access_token=redacted"),
        # Nothing secret: the very same string, encoding and all.
        ("http://h/a%20b.jpg?w=300&keyword=shoe", "http://h/a%20b.jpg?w=300&keyword=shoe"),
        ("http://[::1/a.jpg", "http://[::1/a.jpg"),  # unparseable, nothing to hide
        ("http://u:p@[::1/a.jpg", "http://redacted@[::1/a.jpg"),  # unparseable: user info still goes
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_text_redacts_every_url_it_quotes():
    text = "redirect loop at 'http://u:pw@h/a?sig=9' after http://h/b.jpg?token=t; HTTP 500"
    assert (
        redact_text(text)
        == "redirect loop at 'http://redacted@h/a?sig=redacted' after http://h/b.jpg?token=redacted; HTTP 500"
    )
    assert redact_text("no url here") == "no url here"


SECRETS = ("pw-s3cr3t", "sig-s3cr3t", "tok-s3cr3t", "cred-s3cr3t")


def files_holding(out, secrets):
    """The files under ``out`` that hold any of ``secrets`` (gzip files are read decompressed)."""
    found = []
    for path in glob.glob(os.path.join(out, "**"), recursive=True):
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith((".gz", ".partial")) and data[:2] == b"\x1f\x8b":
            data += zlib.decompressobj(wbits=31).decompress(data)  # a partial file: what it holds so far
        if any(s.encode() in data for s in secrets):
            found.append(path)
    return found


def test_no_secret_reaches_the_status_files_records_or_logs(tmp_path, fault_server, caplog):
    def url(path):
        return fault_server.url(path).replace("http://", "http://alice:pw-s3cr3t@")

    urls = {
        "ok": url("/good/1.jpg?X-Goog-Signature=sig-s3cr3t&w=1"),
        "redirected": url("/to-good/2.jpg?X-Amz-Security-Token=tok-s3cr3t"),
        "missing": url("/missing?X-Goog-Credential=cred-s3cr3t"),
        "refused": "ftp://bob:pw-s3cr3t@h/a.jpg?token=tok-s3cr3t",
    }
    out = str(tmp_path / "out")
    caplog.set_level(logging.DEBUG)
    summary = job.run(
        [f"--input=train={write_json(tmp_path / 'train.json', urls)}", f"--output={out}", "--min_stored_fraction=0"]
        + FAST
    )
    assert summary["splits"]["train"]["ok"] == 2 and fault_server.hits["/good/1.jpg?X-Goog-Signature=sig-s3cr3t&w=1"]
    # The shard plans (the fetch list, full URLs) are gone with the run; plan.json keeps only hashes.
    assert glob.glob(os.path.join(out, "_plan", "*", "*")) == [] and os.path.isfile(
        os.path.join(out, "_plan", "plan.json")
    )
    written = [p for p in glob.glob(os.path.join(out, "**"), recursive=True) if os.path.isfile(p)]
    assert any("_status" in p for p in written) and any(p.endswith(".tfrecord.gz") for p in written)
    assert files_holding(out, SECRETS) == []
    assert not any(s in caplog.text for s in SECRETS)
    examples = {
        e.features.feature[features.IMAGE_ID_KEY].bytes_list.value[0].decode(): e for e in read_examples(out, "train")
    }
    assert example_ids(read_examples(out, "train")) == ["ok", "redirected"]
    stored_url = examples["ok"].features.feature[features.URL_KEY].bytes_list.value[0].decode()
    assert stored_url == fault_server.url("/good/1.jpg?X-Goog-Signature=redacted&w=1").replace(
        "http://", "http://redacted@"
    )
