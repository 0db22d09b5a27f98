"""The compressed (IVF-PQ) index at every embedding width the project offers: 2,048 (InceptionV3,
Xception, ResNet50), 1,280 (EfficientNetV2B0) and 576 (MobileNetV3Small).

FAISS needs the sub-quantizer count ``m`` to divide the width: the default 512 only divides 2,048.
``choose_m`` picks the largest divisor up to the ``m`` asked for; a value no width allows fails
before the (hours long) embedding, and ``imat index`` says so in one line with exit status 2.
"""

import logging
import os

import numpy as np
import pytest

from cli import index as index_command
from components.similar import embed_job
from components.similar.compressed import DEFAULT_M, FaissIVFPQBackend, check_settings, choose_m, sample_key
from components.similar.index import Item, ModelInfo, SimilarityIndex
from components.similar.sharded_build import encode_part, merge_parts, train_template
from tests.helpers import needs

# Tests that build with FAISS: skipped without it (with the install command), failing under CI=true.
# The others (choose_m, the flags' checks) need no FAISS and run everywhere.
NEEDS_FAISS = needs("faiss", "similar")
MODEL = ModelInfo("d" * 64, "serving/5", "5")
WIDTHS = [(576, 288), (1280, 320), (2048, 512)]  # the models' embedding widths and the default m of each


def unit_vectors(n: int, width: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, width))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _m_lines(caplog):
    return [r for r in caplog.records if r.name == "components.similar.compressed" and "used instead of" in r.message]


# choose_m and check_settings: pure, no FAISS


@pytest.mark.parametrize(
    "width, target, expected",
    [
        *[(width, DEFAULT_M, m) for width, m in WIDTHS],
        (1280, 500, 320),  # an m that does not divide the width: the largest divisor below it
        (2048, 300, 256),
        (2048, 1024, 1024),  # above the default, still a divisor: kept
        (64, DEFAULT_M, 64),  # the default above a narrow width: one dimension per sub-quantizer
        (1022, DEFAULT_M, 511),  # 2 x 7 x 73
        (1030, DEFAULT_M, 206),  # 2 x 5 x 103: 515 is over the target
        (2047, DEFAULT_M, 89),  # 23 x 89
        (577, DEFAULT_M, 1),  # a prime width: only 1
        (1280, 1, 1),
    ],
)
def test_m_is_the_largest_divisor_of_the_width_up_to_the_target(width, target, expected):
    m = choose_m(width, target)
    assert m == expected and width % m == 0
    assert not any(width % bigger == 0 for bigger in range(m + 1, min(target, width) + 1))


def test_choose_m_refuses_nonsense():
    for width, target in ((0, 512), (576, 0), (576, -8)):
        with pytest.raises(ValueError, match="at least 1"):
            choose_m(width, target)


def test_an_m_that_does_not_divide_the_width_is_replaced_with_one_line(caplog):
    caplog.set_level(logging.INFO, logger="components.similar.compressed")
    assert check_settings({"m": 500, "nprobe": 4}, 576) == {"m": 288, "nprobe": 4}
    (line,) = _m_lines(caplog)
    assert line.levelno == logging.WARNING
    assert "m=288 used instead of m=500" in line.message and "divide the embedding width 576" in line.message
    caplog.clear()
    assert check_settings({"m": 288}, 576) == {"m": 288} and not _m_lines(caplog)  # a divisor: kept, silently
    assert check_settings({"nprobe": 1}, 576) == {"nprobe": 1}  # no m given: the backend chooses at training


def test_a_prime_width_is_warned_of_a_coarse_code(caplog):
    caplog.set_level(logging.INFO, logger="components.similar.compressed")
    assert check_settings({"m": 512}, 577) == {"m": 1}
    (line,) = _m_lines(caplog)
    assert line.levelno == logging.WARNING and "coarse code of 577-dimension sub-vectors" in line.message


@pytest.mark.parametrize(
    "params, width, expected",
    [
        ({"m": 0}, 576, "m=0 is invalid for embeddings of width 576: .* between 1 and 576 \\(default: 288\\)"),
        ({"m": -4}, 1280, "m=-4 is invalid for embeddings of width 1280: .* between 1 and 1280 \\(default: 320\\)"),
        ({"m": 577}, 576, "m=577 is invalid for embeddings of width 576"),
        ({"m": 4096}, 2048, "m=4096 is invalid for embeddings of width 2048"),
        ({"nprobe": 0}, 576, "nprobe=0 is invalid for embeddings of width 576: .* at least 1"),
        ({"m": 288, "nprobe": -3}, 576, "nprobe=-3 is invalid for embeddings of width 576"),
        ({"m": 0}, None, "m=0 is invalid: .* at least 1"),  # a model that does not declare its width
    ],
)
def test_explicit_invalid_settings_fail_in_one_line(params, width, expected):
    with pytest.raises(ValueError, match=expected) as error:
        check_settings(params, width)
    assert "\n" not in str(error.value) and str(error.value).startswith("faiss-ivfpq: ")


def test_the_backend_refuses_m_or_nprobe_below_one():
    for params in ({"m": 0}, {"nprobe": -1}):
        with pytest.raises(ValueError, match=f"{next(iter(params))}=.* must be at least 1 \\(dimension 576\\)"):
            FaissIVFPQBackend(576, **params)


# FAISS IVF-PQ built and queried at each width


@NEEDS_FAISS
@pytest.mark.usefixtures("one_faiss_thread")
@pytest.mark.parametrize("width, m", WIDTHS)
def test_the_index_builds_at_each_width_and_finds_stored_vectors(width, m, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="components.similar.compressed")
    # 1,000 vectors: 25 cells and 4-bit codes (a 1,000-vector sample trains 2^4 centroids well): a few seconds.
    vectors = unit_vectors(1000, width, seed=width)
    index = SimilarityIndex.build(vectors, [Item(f"train/{i}") for i in range(1000)], MODEL, backend="faiss-ivfpq")
    params = index.backend.params
    assert params["m"] == m and params["nlist"] == 25 and params["nbits"] == 4
    lines = _m_lines(caplog)
    if m == DEFAULT_M:
        assert not lines
    else:  # the default asked for, another used: said once, at INFO
        assert len(lines) == 1 and lines[0].levelno == logging.INFO and f"m={m} used instead" in lines[0].message
    path = str(tmp_path / "index")
    index.save(path)
    loaded = SimilarityIndex.load(path, expected_fingerprint=MODEL.fingerprint)
    assert loaded.manifest["params"]["m"] == m
    rows = np.arange(0, 1000, 20)  # queries that are copies of stored vectors
    for searched in (index, loaded):
        hits = searched.search(vectors[rows], k=5)
        assert [h[0].item.item_id for h in hits] == [f"train/{r}" for r in rows]  # recall@1 of the copies: 1.0
        assert all(h[0].score > 0.5 and h[0].score > h[1].score for h in hits)


@NEEDS_FAISS
@pytest.mark.usefixtures("one_faiss_thread")
def test_the_sharded_build_trains_once_with_the_chosen_m(caplog):
    caplog.set_level(logging.INFO, logger="components.similar.compressed")
    vectors = unit_vectors(800, 1280, seed=7)
    items = [
        {"id": f"train/{i}", "url": "", "labels": (), "vector": v, "thumbnail": b""} for i, v in enumerate(vectors)
    ]
    template = train_template([(sample_key(i["id"]), i["vector"]) for i in items], len(items), {})
    assert template["params"]["m"] == 320
    backend, merged, _ = merge_parts(template, [encode_part(template, items[:300]), encode_part(template, items[300:])])
    assert backend.count == 800 and len(_m_lines(caplog)) == 1  # the parts start from the trained m: no repeat
    rows = np.arange(0, 800, 16)
    found = backend.search(vectors[rows], 3)[1][:, 0]
    assert [merged[r].item_id for r in found] == [f"train/{r}" for r in rows]


# imat index: bad values stop before anything is embedded


@pytest.fixture(scope="module")
def model_576(tmp_path_factory):
    """A SavedModel with an ``embed_images`` signature of width 576 (MobileNetV3Small's), nothing else."""
    import tensorflow as tf

    class Embedder(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones([576]))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def embed_images(self, images):
            rows = tf.tile(self.w[None], [tf.shape(images)[0], 1])
            return {embed_job.EMBED_OUTPUT: tf.math.l2_normalize(rows, axis=-1)}

    path = str(tmp_path_factory.mktemp("model") / "serving" / "1700000000")
    module = Embedder()
    tf.saved_model.save(module, path, signatures={embed_job.EMBED_SIGNATURE: module.embed_images})
    return path


@pytest.fixture
def catalogue(tmp_path):
    path = tmp_path / "data" / "train" / "part-0.tfrecord.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # never read: the job stops first
    return str(path)


@pytest.fixture
def no_embedding(monkeypatch):
    def embed(*args, **kwargs):
        raise AssertionError("the job embedded the catalogue before checking its flags")

    monkeypatch.setattr(embed_job, "EmbedItems", embed)


def _index_args(model, catalogue, tmp_path, *flags):
    return ["--model", model, "--examples", f"train={catalogue}", "--output", str(tmp_path / "out"), *flags]


def test_the_width_is_read_from_the_signature_without_running_the_model(model_576, tmp_path):
    assert embed_job.embedding_width(model_576) == 576
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "saved_model.pb").write_bytes(b"graph")
    assert embed_job.embedding_width(str(fake)) is None


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--m", "0"], "m=0 is invalid for embeddings of width 576"),
        (["--m", "-2"], "m=-2 is invalid for embeddings of width 576"),
        (["--m", "1024"], "m=1024 is invalid for embeddings of width 576"),
        (["--nprobe", "-3"], "nprobe=-3 is invalid for embeddings of width 576"),
        (["--nprobe", "0", "--backend", "faiss-ivfpq"], "nprobe=0 is invalid for embeddings of width 576"),
        (["--backend", "faiss-hnsw", "--m", "64"], "m=64: settings of the compressed backend faiss-ivfpq"),
        (["--shards", "0"], "--batch_size and --shards must be at least 1"),
    ],
)
def test_imat_index_refuses_bad_values_before_embedding(
    flags, expected, model_576, catalogue, no_embedding, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        index_command.main(_index_args(model_576, catalogue, tmp_path, *flags))
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("imat index")]
    assert len(errors) == 1 and errors[0].startswith("imat index: error: ") and expected in errors[0]
    assert not os.path.exists(tmp_path / "out")


def test_imat_index_passes_the_chosen_m_to_the_index(model_576, catalogue, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="components.similar.compressed")
    given = {}

    class Stop(Exception):
        pass

    def write_index(*args):
        given["params"] = args[-1]
        raise Stop  # the graph is built, nothing ran

    monkeypatch.setattr(embed_job, "WriteIndex", write_index)
    with pytest.raises(Stop):
        index_command.main(_index_args(model_576, catalogue, tmp_path, "--m", "500", "--nprobe", "8"))
    assert given["params"] == {"m": 288, "nprobe": 8}
    (line,) = _m_lines(caplog)
    assert "m=288 used instead of m=500" in line.message


def test_the_flags_are_documented_in_help(capsys):
    with pytest.raises(SystemExit):
        embed_job.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--m M" in out and "--nprobe NPROBE" in out and "320 for 1,280, 288 for 576" in out
