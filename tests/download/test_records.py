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
    doc = {
        "images": [{"imageId": "1", "url": "http://h/1.jpg"}, {"imageId": "2", "url": "https://h/2.jpg"}],
        "annotations": [{"imageId": "1", "labelId": ["95", "66"]}, {"imageId": "2", "labelId": ["3"]}],
    }
    items, bad, _ = _read(tmp_path, json.dumps(doc))
    assert items == [ImageRecord("1", ("http://h/1.jpg",), (66, 95)), ImageRecord("2", ("https://h/2.jpg",), (3,))]
    assert bad == []


def test_official_readme_spelling_with_int_ids_and_url_lists(tmp_path):
    doc = {
        "images": [{"image_id": 7, "url": ["http://h/7.jpg", "http://mirror/7.jpg"]}],
        "annotations": [{"image_id": 7, "label_id": [12, 4, 12]}],
    }
    items, bad, _ = _read(tmp_path, json.dumps(doc))
    assert items == [ImageRecord("7", ("http://h/7.jpg", "http://mirror/7.jpg"), (4, 12))]
    assert bad == []


def test_test_file_without_annotations_gives_empty_labels(tmp_path):
    items, bad, _ = _read(tmp_path, json.dumps({"images": [{"imageId": "5", "url": "http://h/5.jpg"}]}))
    assert items == [ImageRecord("5", ("http://h/5.jpg",), ())]
    assert bad == []


def test_bad_records_are_reported_with_file_index_and_reason(tmp_path):
    doc = {
        "images": [
            {"imageId": "1"},
            {"url": "http://h/x.jpg"},
            {"imageId": "3", "url": "file:///etc/passwd"},
            "not an object",
            {"imageId": "5", "url": "http://h/5.jpg"},
            {"imageId": "6", "url": "http://h/6"},
        ],
        "annotations": [{"imageId": "5", "labelId": ["x1"]}, {"imageId": "6", "labelId": ["2"]}, {"labelId": ["1"]}],
    }
    items, bad, source = _read(tmp_path, json.dumps(doc))
    good = [i for i in items if isinstance(i, ImageRecord)]
    refused = [i for i in items if isinstance(i, BadRecord)]
    # Image 5's only annotation is unusable: its labels are unknown, so it is not fetched at all.
    assert good == [ImageRecord("6", ("http://h/6",), (2,))]
    assert [r.status for r in refused] == ["bad_record", "bad_record", "bad_url", "bad_record"]
    assert f"{source}, images[0] (imageId 1): url" in refused[0].reason
    assert "images[1]: missing or invalid imageId" in refused[1].reason
    assert "only http and https" in refused[2].reason
    assert [(b.image_id, b.status) for b in bad] == [("5", "bad_annotation"), ("", "bad_annotation")]
    assert "annotations[0]" in bad[0].reason and "'x1' is not an integer" in bad[0].reason
    assert "annotations[2]: missing or invalid imageId" in bad[1].reason


def test_a_refused_annotation_is_not_undone_by_a_later_good_one(tmp_path):
    doc = {
        "images": [{"imageId": "5", "url": "http://h/5.jpg"}, {"imageId": "6", "url": "http://h/6.jpg"}],
        "annotations": [
            {"imageId": "5", "labelId": [True]},
            {"imageId": "5", "labelId": ["3"]},
            {"imageId": "6", "labelId": ["1"]},
            {"imageId": "6", "labelId": ["4", "1"]},
        ],
    }
    items, bad, _ = _read(tmp_path, json.dumps(doc))
    assert items == [ImageRecord("6", ("http://h/6.jpg",), (1, 4))]  # repeated good annotations merge
    assert [b.image_id for b in bad] == ["5"]


def _malformed(tmp_path, text: bytes) -> str:
    path = tmp_path / "split.json"
    path.write_bytes(text)
    open_fn = lambda: open(path, "rb")
    with pytest.raises(ManifestError) as err:
        labels = read_annotations(open_fn, str(path), lambda bad: None)
        list(iter_images(open_fn, str(path), labels))
    message = str(err.value)
    assert message.startswith(f"{path}: malformed JSON at byte ") and "\n" not in message
    return message


def test_malformed_json_names_array_record_and_byte_offset(tmp_path):
    text = b'{"images": [{"imageId": "1", "url": "http://h/1.jpg"}, {"imageId": "2", "url": }]}'
    message = _malformed(tmp_path, text)
    assert f"at byte {text.index(b': }') + 2}, inside images[1]: " in message
    assert "unallowed token" in message


def test_a_cut_inside_images_is_reported_against_images_even_when_annotations_follow(tmp_path):
    # The real files put images first; annotations are read first, and must not take the blame.
    images = [{"imageId": str(i), "url": f"http://h/{i}.jpg"} for i in range(5000)]
    text = json.dumps({"images": images, "annotations": []}).encode()
    cut = text.index(b'"imageId": "3210"') + 5
    message = _malformed(tmp_path, text[:cut])
    assert f"at byte {cut - 1}, inside images[3210]: " in message and "premature EOF" in message


def test_truncated_annotations_name_the_annotation(tmp_path):
    text = b'{"images": [], "annotations": [{"imageId": "1", "labelId": ["1"]}, {"imageId"'
    message = _malformed(tmp_path, text)
    assert f"at byte {len(text) - 1}, inside annotations[1]: " in message


def test_a_missing_comma_between_records_is_placed_after_the_last_good_record(tmp_path):
    text = b'{"images": [{"imageId": "1", "url": "http://h/1"} {"imageId": "2", "url": "http://h/2"}]}'
    message = _malformed(tmp_path, text)
    assert f"at byte {text.index(b'} {') + 2}, after images[0]: " in message


def test_non_utf8_json_says_so_without_echoing_bytes(tmp_path):
    text = '{"images": [{"imageId": "1", "url": "http://h/caf\u00e9.jpg"}]}'.encode("latin-1")
    message = _malformed(tmp_path, text)
    assert "inside images[0]: not UTF-8 text" in message
    assert "\\x" not in message and "b'" not in message
    offset = int(message.split("at byte ")[1].split(",")[0])
    assert text.index(b"\xe9") <= offset <= text.index(b"\xe9") + 1


def test_file_without_images_is_an_error(tmp_path):
    open_fn, source = _opener(tmp_path, '{"annotations": []}')
    with pytest.raises(ManifestError, match="no 'images' array"):
        list(iter_images(open_fn, source, {}))
