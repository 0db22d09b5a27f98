"""Span folders and which spans a run reads (imat_common/spans.py)."""

import pytest

from imat_common import spans


def test_folder_and_pattern_name_a_span_without_padding():
    assert spans.folder(3) == "span-3"
    assert spans.pattern("train/*.tfrecord.gz") == "span-{SPAN}/train/*.tfrecord.gz"
    assert spans.pattern("train/*.gz", "12") == "span-12/train/*.gz"
    with pytest.raises(ValueError, match="span is a number >= 0"):
        spans.folder(-1)


def test_numbers_reads_span_folders_numerically_and_ignores_the_rest():
    names = ["span-10", "span-2/", "gs://b/data/span-1", "span-x", "train", "span-3.tmp", "_status"]
    assert spans.numbers(names) == [1, 2, 10]


def test_window_takes_the_newest_spans_present_even_with_gaps():
    present = [1, 2, 5, 7]
    assert spans.window(present, 7, 1) == [7]
    assert spans.window(present, 7, 3) == [2, 5, 7]
    assert spans.window(present, 5, 10) == [1, 2, 5]  # spans newer than the run's are not read
    with pytest.raises(ValueError, match="train_spans must be at least 1"):
        spans.window(present, 7, 0)
    with pytest.raises(ValueError, match="span 4 is not among"):
        spans.window(present, 4, 2)


def test_previous_is_the_highest_span_below_the_newest():
    assert spans.previous([1, 2, 5], 5) == 2
    assert spans.previous([3, 1], 3) == 1
    assert spans.previous([4], 4) is None
