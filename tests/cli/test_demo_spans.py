"""``imat demo --spans K``: spans with their own image ids and draws, the last one shifted."""

import collections
import glob
import json
import os
import random
import statistics

import pytest
from PIL import Image, ImageStat

from cli import demo, demo_data
from imat_common.workdir import Workdir

COLOR_OF_LABEL = {label.label_id: label.name for label in demo_data.label_table() if label.task == "color"}


def color_shares(splits) -> dict:
    """Colour name -> its share of the span's images, from the label ids ``write_images`` returned."""
    colors = [
        COLOR_OF_LABEL[k] for items in splits.values() for _, labels in items for k in labels if k in COLOR_OF_LABEL
    ]
    counts = collections.Counter(colors)
    return {name: counts[name] / len(colors) for name in demo_data.COLORS}


def mean_brightness(span_dir: str) -> float:
    return statistics.mean(
        ImageStat.Stat(Image.open(path).convert("L")).mean[0]
        for path in glob.glob(os.path.join(span_dir, "images", "*"))
    )


def mean_jpeg_bytes(span_dir: str) -> float:
    return statistics.mean(os.path.getsize(path) for path in glob.glob(os.path.join(span_dir, "images", "*")))


def test_only_the_last_of_two_or_more_spans_is_shifted():
    shift = demo_data.Shift()
    assert demo_data.span_shift(2, 2, shift) is shift
    assert demo_data.span_shift(3, 3, shift) is shift
    assert demo_data.span_shift(1, 2, shift) is None
    assert demo_data.span_shift(2, 3, shift) is None
    assert demo_data.span_shift(1, 1, shift) is None  # one span: nothing to drift from
    assert demo_data.span_shift(2, 2, None) is None


def test_a_shift_chooses_its_colour_at_its_share_and_dims_every_shade():
    rng = random.Random(0)
    always = [demo_data.choose_garment(rng, 64, demo_data.Shift("blue", 1.0, 0.5)) for _ in range(50)]
    never = [demo_data.choose_garment(rng, 64, demo_data.Shift("blue", 0.0, 1.0)) for _ in range(50)]
    assert {g.color for g in always} == {"blue"}
    assert "blue" not in {g.color for g in never}
    assert len({g.color for g in never}) == len(demo_data.COLORS) - 1
    # The same draws with and without the darker studio: the shades halve, the labels stay.
    plain = demo_data.choose_garment(random.Random(5), 64, demo_data.Shift("blue", 1.0, 1.0))
    dark = demo_data.choose_garment(random.Random(5), 64, demo_data.Shift("blue", 1.0, 0.5))
    assert dark.label_ids() == plain.label_ids()
    for shade in ("background", "fill", "ink", "detail"):
        assert getattr(dark, shade) == tuple(round(c * 0.5) for c in getattr(plain, shade)), shade
    with pytest.raises(ValueError, match="purple"):
        demo_data.Shift(color="purple")


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    """Three spans of 300 small images, the last shifted, and the same without the shift."""
    shifted, unshifted = tmp_path_factory.mktemp("shifted"), tmp_path_factory.mktemp("unshifted")
    return (
        str(shifted),
        demo_data.write_spans(str(shifted), 3, 300, size=48, seed=0, shift=demo_data.Shift()),
        str(unshifted),
        demo_data.write_spans(str(unshifted), 3, 300, size=48, seed=0, shift=None),
    )


def test_the_shifted_span_has_far_more_of_the_chosen_colour(spans):
    _, shifted, _, unshifted = spans
    shares = {span: color_shares(splits) for span, splits in shifted.items()}
    print("red's share by span:", {span: round(s["red"], 3) for span, s in shares.items()})
    assert shares[3]["red"] > 0.35
    assert max(share for name, share in shares[3].items() if name != "red") < 0.15
    for span in (1, 2):
        assert max(shares[span].values()) < 0.25, shares[span]
    without = color_shares(unshifted[3])
    print("red's share in span 3 without the shift:", round(without["red"], 3))
    assert max(without.values()) < 0.25, without
    assert shifted[1] == unshifted[1] and shifted[2] == unshifted[2]  # the shift touches the last span only


def test_the_shifted_span_is_darker_and_without_the_shift_it_is_not(spans):
    shifted_dir, _, unshifted_dir, _ = spans
    span_dir = demo_data.span_folder
    bright = {span: mean_brightness(span_dir(shifted_dir, span)) for span in (1, 2, 3)}
    plain_last = mean_brightness(span_dir(unshifted_dir, 3))
    sizes = {span: mean_jpeg_bytes(span_dir(shifted_dir, span)) for span in (1, 3)}
    print(f"mean brightness by span: {bright}; span 3 without the shift: {plain_last}; JPEG bytes: {sizes}")
    assert bright[3] < bright[1] - 40
    assert abs(bright[2] - bright[1]) < 5
    assert abs(plain_last - bright[1]) < 5
    assert abs(sizes[3] - sizes[1]) > 0.05 * sizes[1]


def test_image_ids_are_unique_across_spans_and_the_draws_differ(spans):
    shifted_dir, shifted, _, unshifted = spans
    ids = [image_id for splits in shifted.values() for items in splits.values() for image_id, _ in items]
    assert len(ids) == len(set(ids)) == 900
    for span, splits in shifted.items():
        for items in splits.values():
            for image_id, _ in items:
                assert os.path.exists(
                    os.path.join(demo_data.span_folder(shifted_dir, span), "images", f"{image_id}.jpg")
                )
    labels = {span: [lab for items in splits.values() for _, lab in items] for span, splits in unshifted.items()}
    assert labels[1] != labels[2] != labels[3] != labels[1]


def test_the_same_seed_gives_the_same_spans_and_another_seed_does_not(tmp_path):
    def write(name, seed):
        splits = demo_data.write_spans(str(tmp_path / name), 2, 20, size=32, seed=seed, shift=demo_data.Shift())
        images = sorted(glob.glob(str(tmp_path / name / "span-2" / "images" / "*.jpg")))
        return splits, [open(path, "rb").read() for path in images]

    assert write("a", 0) == write("b", 0)
    assert write("c", 1)[0] != write("a", 0)[0]


def test_imat_demo_spans_downloads_each_span_into_its_folder(tmp_path, capsys):
    work = Workdir(str(tmp_path / "w"))
    demo.main(["--workdir", work.root, "--spans", "2", "--num_images", "20"])
    out = capsys.readouterr().out
    assert "demo data: span 1: 20 images" in out and "shifted" not in out.split("demo data: span 2")[0]
    assert "demo data: span 2: 20 images" in out and "shifted: Shift(color='red'" in out
    for span in (1, 2):
        data = demo_data.span_folder(work.data, span)
        for split in ("train", "validation"):
            assert glob.glob(os.path.join(data, split, "*.tfrecord.gz")), (span, split)
        with open(os.path.join(data, "summary.json")) as f:
            summary = json.load(f)["splits"]
        assert {name: s["ok"] for name, s in summary.items()} == {"train": 14, "validation": 4, "test": 2}
        with open(os.path.join(demo_data.span_folder(work.source, span), "train.json")) as f:
            images = json.load(f)["images"]
        assert [int(i["imageId"]) for i in images] == list(range(20 * span - 19, 20 * span - 5))
        assert all(f"/span-{span}/images/" in i["url"] for i in images)
    assert not os.path.exists(os.path.join(work.data, "train"))
    label_maps = glob.glob(os.path.join(work.root, "**", "*.csv"), recursive=True)
    assert label_maps == [work.label_map]
    assert open(work.label_map).read().count("\n") == len(demo_data.label_table()) + 1


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--spans=-1"], "--spans takes a whole number >= 0"),
        (["--span", "2"], "the demo writes K spans with --spans K"),
    ],
)
def test_imat_demo_refuses_a_negative_span_count_and_the_download_jobs_span_flag(tmp_path, capsys, flag, message):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--workdir", str(tmp_path / "w")] + flag)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
