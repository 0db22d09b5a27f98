"""Secrets in image URLs (user info, signatures, tokens) never reach the output folder, the logs or errors."""

import glob
import logging
import os

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
    # The plan is the fetch list itself (what the input JSON holds); everything else is checked.
    written = [p for p in glob.glob(os.path.join(out, "**"), recursive=True) if os.path.isfile(p)]
    checked = [p for p in written if os.sep + "_plan" + os.sep not in p]
    assert any("_status" in p for p in checked) and any(p.endswith(".tfrecord.gz") for p in checked)
    for path in checked:
        text = open(path, "rb").read()
        if path.endswith(".gz"):
            import gzip

            text = gzip.decompress(text)
        assert not any(s.encode() in text for s in SECRETS), path
    assert not any(s in caplog.text for s in SECRETS)
    examples = {
        e.features.feature[features.IMAGE_ID_KEY].bytes_list.value[0].decode(): e for e in read_examples(out, "train")
    }
    assert example_ids(read_examples(out, "train")) == ["ok", "redirected"]
    stored_url = examples["ok"].features.feature[features.URL_KEY].bytes_list.value[0].decode()
    assert stored_url == fault_server.url("/good/1.jpg?X-Goog-Signature=redacted&w=1").replace(
        "http://", "http://redacted@"
    )
