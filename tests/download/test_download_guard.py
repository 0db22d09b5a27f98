"""The download job's private-network guard and opt-out headers, against the loopback fault server."""

from components.download import job
from tests.helpers import FAST, FAST_GUARDED, example_ids, read_examples, statuses, write_json


def _run(tmp_path, urls, extra):
    out = str(tmp_path / "out")
    # These splits are meant to fail mostly: the share of stored images is not what is tested here.
    argv = [f"--input=train={write_json(tmp_path / 'train.json', urls)}", f"--output={out}", "--min_stored_fraction=0"]
    job.run(argv + extra)
    return statuses(out, "train"), example_ids(read_examples(out, "train"))


def _numeric_spellings(port):
    return {
        "decimal": f"http://2130706433:{port}/good/decimal.jpg",
        "hex": f"http://0x7f000001:{port}/good/hex.jpg",
        "octal": f"http://0177.0.0.1:{port}/good/octal.jpg",
        "short": f"http://127.1:{port}/good/short.jpg",
    }


def test_loopback_private_and_metadata_addresses_are_refused_without_a_request(tmp_path, fault_server):
    port = fault_server.base.rsplit(":", 1)[1]
    urls = {
        "plain": fault_server.url("/good/plain.jpg"),
        "name": f"http://localhost:{port}/good/name.jpg",
        "ipv6": f"http://[::1]:{port}/good/ipv6.jpg",
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/good/mapped.jpg",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "private": f"http://10.0.0.1:{port}/x.jpg",
        **_numeric_spellings(port),
    }
    by_id, stored = _run(tmp_path, urls, FAST_GUARDED)
    assert {i: s["status"] for i, s in by_id.items()} == {i: "blocked_address" for i in urls}
    assert "localhost resolves to" in by_id["name"]["reason"] and "loopback" in by_id["name"]["reason"]
    assert by_id["metadata"]["reason"] == "169.254.169.254 is a link-local address"
    assert by_id["decimal"]["reason"] == "127.0.0.1 is a loopback address"  # the spelling is decoded first
    assert stored == [] and sum(fault_server.hits.values()) == 0  # no request ever reached the server


def test_allow_private_networks_fetches_loopback_in_every_spelling(tmp_path, fault_server):
    port = fault_server.base.rsplit(":", 1)[1]
    urls = {
        "plain": fault_server.url("/good/plain.jpg"),
        "name": f"http://localhost:{port}/good/name.jpg",
        **_numeric_spellings(port),
    }
    by_id, stored = _run(tmp_path, urls, FAST)
    assert {i: s["status"] for i, s in by_id.items()} == {i: "ok" for i in urls}
    assert by_id["hex"]["url"] == f"http://127.0.0.1:{port}/good/hex.jpg"  # fetched from the checked address
    assert stored == sorted(urls)


def test_a_redirect_to_a_refused_address_is_refused_at_that_hop(tmp_path, fault_server):
    port = fault_server.base.rsplit(":", 1)[1]
    # 127.0.0.1 is allowed by --allow_network, so the first hop is fetched and each redirect is judged.
    targets = {
        "other-loopback": f"http://127.0.0.2:{port}/good/a.jpg",
        "ipv6": f"http://[::1]:{port}/good/b.jpg",
        "metadata": "http://169.254.169.254/latest/meta-data/iam/",
        "hex-spelling": f"http://0x7f000002:{port}/good/c.jpg",
        "private": "http://192.168.0.1/d.jpg",
    }
    urls = {name: fault_server.redirect_to(target) for name, target in targets.items()}
    urls["allowed"] = fault_server.redirect_to(f"http://2130706433:{port}/good/allowed.jpg")
    by_id, stored = _run(tmp_path, urls, FAST_GUARDED + ["--allow_network=127.0.0.1/32"])
    assert {i: s["status"] for i, s in by_id.items() if i != "allowed"} == {i: "blocked_address" for i in targets}
    assert by_id["allowed"]["status"] == "ok" and stored == ["allowed"]
    assert all(fault_server.hits[f"/good/{name}.jpg"] == 0 for name in "abc")
    assert sum(v for k, v in fault_server.hits.items() if k.startswith("/redirect")) == len(urls)


def test_every_x_robots_tag_header_is_honoured(tmp_path, fault_server):
    urls = {"two": fault_server.url("/two-robots.jpg"), "good": fault_server.url("/good/1.jpg")}
    by_id, stored = _run(tmp_path, urls, FAST)
    assert by_id["two"]["status"] == "opted_out" and "noai" in by_id["two"]["reason"]
    assert stored == ["good"]
    other = tmp_path / "ignored"
    other.mkdir()
    by_id, stored = _run(other, urls, FAST + ["--ignore_opt_out"])
    assert by_id["two"]["status"] == "ok" and stored == ["good", "two"]
