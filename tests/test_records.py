"""The competition JSON reader: both spellings, the test file, bad records, malformed files."""
import json

import pytest

from components.download.records import BadRecord, ImageRecord, ManifestError, iter_images, read_annotations


def _opener(tmp_path, text, name="split.json"):
    path = tmp_path / name
    path.write_text(text)
    return (lambda: open(path, "rb")), str(path)


def _read(tmp_path, doc_text):
    open_fn, source = _opener(tmp_path, doc_text)
    bad = []
    labels = read_annotations(open_fn, source, bad.append)
    return list(iter_images(open_fn, source, labels)), bad, source


def test_real_file_spelling(tmp_path):
    doc = {"images": [{"imageId": "1", "url": "http://h/1.jpg"}, {"imageId": "2", "url": "https://h/2.jpg"}],
           "annotations": [{"imageId": "1", "labelId": ["95", "66"]}, {"imageId": "2", "labelId": ["3"]}]}
    items, bad, _ = _read(tmp_path, json.dumps(doc))
    assert items == [ImageRecord("1", ("http://h/1.jpg",), (66, 95)), ImageRecord("2", ("https://h/2.jpg",), (3,))]
    assert bad == []


def test_official_readme_spelling_with_int_ids_and_url_lists(tmp_path):
    doc = {"images": [{"image_id": 7, "url": ["http://h/7.jpg", "http://mirror/7.jpg"]}],
           "annotations": [{"image_id": 7, "label_id": [12, 4, 12]}]}
    items, bad, _ = _read(tmp_path, json.dumps(doc))
    assert items == [ImageRecord("7", ("http://h/7.jpg", "http://mirror/7.jpg"), (4, 12))]
    assert bad == []


def test_test_file_without_annotations_gives_empty_labels(tmp_path):
    items, bad, _ = _read(tmp_path, json.dumps({"images": [{"imageId": "5", "url": "http://h/5.jpg"}]}))
    assert items == [ImageRecord("5", ("http://h/5.jpg",), ())]
    assert bad == []


def test_bad_records_are_reported_with_file_index_and_reason(tmp_path):
    doc = {"images": [{"imageId": "1"}, {"url": "http://h/x.jpg"}, {"imageId": "3", "url": "file:///etc/passwd"},
                      "not an object", {"imageId": "5", "url": "http://h/5.jpg"}],
           "annotations": [{"imageId": "5", "labelId": ["x1"]}]}
    items, bad, source = _read(tmp_path, json.dumps(doc))
    good = [i for i in items if isinstance(i, ImageRecord)]
    refused = [i for i in items if isinstance(i, BadRecord)]
    assert [g.image_id for g in good] == ["5"]
    assert good[0].labels == ()  # its only annotation was unusable
    assert [r.status for r in refused] == ["bad_record", "bad_record", "bad_url", "bad_record"]
    assert f"{source}, images[0] (imageId 1): url" in refused[0].reason
    assert "images[1]: missing or invalid imageId" in refused[1].reason
    assert "only http and https" in refused[2].reason
    assert len(bad) == 1 and "annotations[0]" in bad[0].reason and "'x1' is not an integer" in bad[0].reason


def test_malformed_json_names_file_and_position(tmp_path):
    text = '{"images": [{"imageId": "1", "url": "http://h/1.jpg"}, {"imageId": "2", "url": }]}'
    open_fn, source = _opener(tmp_path, text)
    with pytest.raises(ManifestError) as err:
        list(iter_images(open_fn, source, {}))
    message = str(err.value)
    assert source in message and "malformed JSON after record 0 of 'images'" in message


def test_truncated_annotations_raise_before_any_download(tmp_path):
    open_fn, source = _opener(tmp_path, '{"annotations": [{"imageId": "1", "labelId": ["1"]}, {"imageId"')
    with pytest.raises(ManifestError, match="malformed JSON after record 0 of 'annotations'"):
        read_annotations(open_fn, source, lambda bad: None)


def test_file_without_images_is_an_error(tmp_path):
    open_fn, source = _opener(tmp_path, '{"annotations": []}')
    with pytest.raises(ManifestError, match="no 'images' array"):
        list(iter_images(open_fn, source, {}))
