"""One label map reader for every command: a spreadsheet's byte-order mark or Latin-1 reads the same in
`imat download`, `imat schema` and `imat run`, and a broken file exits 2 from each, naming the file."""

import logging
import os

import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from cli import main as imat
from components.download import plan as plan_lib
from imat_common import features
from imat_common.features import Label, LabelMap, LabelMapError
from pipeline import schema as schema_lib
from tests.helpers import FAST, read_examples, statuses, write_json

HEADER = "labelId,taskId,labelName,taskName\r\n"  # spreadsheets end lines with CRLF
LABELS = LabelMap(
    (Label(1, 1, "Beige clair é", "couleur"), Label(2, 1, "Noir", "couleur"), Label(3, 2, "Été", "saison"))
)
ROWS = "".join(f"{label.label_id},{label.task_id},{label.name},{label.task}\r\n" for label in LABELS.labels)
# What a spreadsheet writes for "CSV UTF-8" (a byte-order mark first) and for plain "CSV" on Windows.
SAVED_AS = {"utf-8 with byte-order mark": "utf-8-sig", "latin-1": "cp1252"}


def _imat_fails(capsys, argv):
    """Runs `imat ARGV`; returns its one line of stderr after checking exit code 2 and no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        imat.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("encoding", SAVED_AS.values(), ids=SAVED_AS.keys())
def test_a_spreadsheets_label_map_reads_the_same_in_download_schema_and_run(
    tmp_path, capsys, caplog, monkeypatch, fault_server, encoding
):
    label_map = tmp_path / "label_map.csv"
    label_map.write_bytes((HEADER + ROWS).encode(encoding))
    assert label_map.read_bytes().startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")

    # imat run, and the trainer and runners it starts, read it with features.load_label_map.
    with caplog.at_level(logging.WARNING, logger="imat_common.features"):
        assert features.load_label_map(str(label_map)) == LABELS
    fell_back = [r.getMessage() for r in caplog.records if "read as Latin-1" in r.getMessage()]
    offset = (HEADER + ROWS).encode(encoding).find(b"\xe9")  # the é of "Beige clair é"
    expected = f"{label_map}: not UTF-8 (line 2, byte 0xe9 at offset {offset}); read as Latin-1 (Windows-1252)"
    assert fell_back == ([expected] if encoding == "cp1252" else [])

    # imat download: the label map it plans with, and what it keeps and refuses by it.
    planned_with = []
    plan_split = plan_lib.plan_split

    def recording_plan_split(split, source, out_dir, images_per_shard, labels, write=True):
        planned_with.append(labels)
        return plan_split(split, source, out_dir, images_per_shard, labels, write)

    monkeypatch.setattr(plan_lib, "plan_split", recording_plan_split)
    source = write_json(
        tmp_path / "train.json",
        {"1": fault_server.url("/good/1.jpg"), "2": fault_server.url("/good/2.jpg")},
        {"1": [1, 3], "2": [2, 4]},  # label 4 is not in the map
    )
    out = tmp_path / "data"
    imat.main(["download", f"--input=train={source}", f"--output={out}", f"--label_map={label_map}"] + FAST)
    assert planned_with == [LABELS]
    status = statuses(str(out), "train")
    assert status["1"]["status"] == "ok" and status["2"]["status"] == "unknown_label"
    [stored] = read_examples(str(out), "train")
    assert list(stored.features.feature[features.LABELS_KEY].int64_list.value) == [1, 3]

    # imat schema: the label map's domain, the same as from the parsed labels.
    schema = tmp_path / "schema.pbtxt"
    imat.main(["schema", "--label_map", str(label_map), "--output", str(schema)])
    assert schema_lib.read_schema(str(schema)) == schema_lib.build_schema(LABELS)
    imat.main(["schema", "--label_map", str(label_map), "--check", str(schema)])
    assert "matches" in capsys.readouterr().out


# file contents -> what the error says after the file's name
BROKEN = {
    "empty": (b"", ": empty file; expected the header labelId,taskId,labelName,taskName"),
    "only the header": (b"labelId,taskId,labelName,taskName\n\n,,,\n", ": no labels, only the header"),
    "a missing column": (
        b"labelId,taskId,labelName\n1,1,a\n",
        ", line 1: header lacks column(s) ['taskName']; expected ['labelId', 'taskId', 'labelName', 'taskName'], "
        "found ['labelId', 'taskId', 'labelName']",
    ),
    "semicolons": (
        b"labelId;taskId;labelName;taskName\n1;1;a;t\n",
        ", line 1: header lacks column(s) ['labelId', 'taskId', 'labelName', 'taskName']; expected ['labelId', "
        "'taskId', 'labelName', 'taskName'], found ['labelId;taskId;labelName;taskName']; it is separated by ';', "
        "save it separated by ','",
    ),
    "a repeated id": (
        b"labelId,taskId,labelName,taskName\n1,1,a,t\n2,1,b,t\n1,2,c,u\n",
        ", line 4: labelId 1 appears twice (first on line 2)",
    ),
    "a non-integer id": (
        b"labelId,taskId,labelName,taskName\n1,1,a,t\nx,1,b,t\n",
        ", line 3: labelId and taskId must be integers, got 'x', '1'",
    ),
    "an id below 1": (b"labelId,taskId,labelName,taskName\n0,1,a,t\n", ", line 2: labelId must be >= 1, got 0"),
    "an unquoted comma": (
        b"labelId,taskId,labelName,taskName\n1,1,Beige, clair,couleur\n",
        ", line 2: 5 fields, the header has 4 (a comma inside a name needs the name in double quotes)",
    ),
    "a short record": (b"labelId,taskId,labelName,taskName\n1,1,a,t\n2,1\n", ", line 3: 2 fields, the header has 4"),
    "a NUL byte": (b"labelId,taskId,labelName,taskName\n1,1,a\x00,t\n", ", line 2: not CSV (line contains NUL)"),
    "utf-16": (
        "labelId,taskId,labelName,taskName\n1,1,a,t\n".encode("utf-16"),
        ": UTF-16 text (it starts with a UTF-16 byte-order mark); save it as CSV UTF-8",
    ),
    "a byte-order mark, then not utf-8": (
        b"\xef\xbb\xbflabelId,taskId,labelName,taskName\n1,1,caf\xe9,t\n",
        ": starts with a UTF-8 byte-order mark but is not UTF-8 (line 2, byte 0xe9 at offset 44)",
    ),
    "neither utf-8 nor windows-1252": (
        b"labelId,taskId,labelName,taskName\n1,1,caf\x81,t\n",
        ": neither UTF-8 nor Latin-1 (Windows-1252) text (line 2, byte 0x81 at offset 41); save it as CSV UTF-8",
    ),
}


@pytest.mark.parametrize("data, message", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_label_map_says_what_and_where(tmp_path, data, message):
    path = tmp_path / "label_map.csv"
    path.write_bytes(data)
    with pytest.raises(LabelMapError) as error:
        features.load_label_map(str(path))
    assert str(error.value) == f"{path}{message}"


def test_quoted_names_with_commas_and_blank_rows_are_read(tmp_path):
    path = tmp_path / "label_map.csv"
    path.write_bytes(
        b'taskName,labelId,notes,taskId,labelName\r\ncouleur,1,,1,"Beige, clair"\r\n,,,,\r\nsaison,2,x,2,Ete\r\n'
    )
    assert features.load_label_map(str(path)) == LabelMap(
        (Label(1, 1, "Beige, clair", "couleur"), Label(2, 2, "Ete", "saison"))
    )


def test_a_missing_label_map_or_a_folder_is_a_label_map_error(tmp_path):
    with pytest.raises(LabelMapError) as missing:
        features.load_label_map(str(tmp_path / "nope.csv"))
    assert str(missing.value) == f"{tmp_path / 'nope.csv'}: no such file or directory"
    with pytest.raises(LabelMapError) as folder:
        features.load_label_map(str(tmp_path))
    assert str(folder.value) == f"{tmp_path}: is a directory"


class _FolderAsBucket(LocalFileSystem):
    """Beam's local file system serving gs://path from a folder: what ``FileSystems`` dispatches gs:// to."""

    root = ""

    @classmethod
    def scheme(cls):
        return "gs"

    def _local(self, path):
        return os.path.join(self.root, path[len("gs://") :])

    def exists(self, path):
        return super().exists(self._local(path))

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        return super().open(self._local(path), mime_type, compression_type)


def test_a_label_map_in_a_bucket_is_read_the_same_way(tmp_path, monkeypatch):
    # The Trainer on Vertex AI and `imat compile` read gs:// label maps; Beam's file systems open them.
    _FolderAsBucket.root = str(tmp_path)
    real = FileSystems.get_filesystem
    monkeypatch.setattr(
        FileSystems,
        "get_filesystem",
        staticmethod(lambda path: _FolderAsBucket(None) if path.startswith("gs://") else real(path)),
    )
    (tmp_path / "label_map.csv").write_bytes((HEADER + ROWS).encode("utf-8-sig"))
    assert features.load_label_map("gs://label_map.csv") == LABELS
    with pytest.raises(LabelMapError) as missing:
        features.load_label_map("gs://nope.csv")
    assert str(missing.value) == "gs://nope.csv: no such file"


def test_a_broken_label_map_exits_2_from_download_schema_and_run_naming_the_file(tmp_path, capsys):
    label_map = tmp_path / "label_map.csv"
    label_map.write_bytes(b"labelId,taskId,labelName,taskName\n1,1,a,t\n1,1,b,t\n")
    problem = f"{label_map}, line 3: labelId 1 appears twice (first on line 2)"
    source = write_json(tmp_path / "train.json", {"1": "http://127.0.0.1:9/1.jpg"})

    err = _imat_fails(
        capsys, ["download", f"--input=train={source}", f"--output={tmp_path / 'out'}", f"--label_map={label_map}"]
    )
    assert err == f"imat download: error: {problem}"
    err = _imat_fails(capsys, ["schema", "--label_map", str(label_map), "--output", str(tmp_path / "schema.pbtxt")])
    assert err == f"imat schema: error: {problem}"
    workdir = tmp_path / "work"
    err = _imat_fails(
        capsys, ["run", "--data", str(tmp_path / "out"), "--label_map", str(label_map), "--workdir", str(workdir)]
    )
    assert err == f"imat run: error: {problem}"
    assert not (tmp_path / "out").exists() and not (tmp_path / "schema.pbtxt").exists()
    assert not (workdir / "pipeline").exists()  # stopped before any component
