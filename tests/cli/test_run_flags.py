"""imat run and imat compile take every flagged setting as a flag, generated from the fields' metadata."""

import contextlib
import io
import json
import os

import pytest

from cli import compile as compile_command
from cli import flags
from cli import main as imat
from cli import run as run_command
from imat_common.settings import SettingsError, help_of, kind_of
from imat_common.workdir import Workdir
from pipeline.config import Locations, PipelineConfig
from tests.helpers import KUBEFLOW
from trainer.settings import TrainerSettings

SETTINGS = dict(flags.setting_fields())
COMPILE_REQUIRED = [
    "--project",
    "p",
    "--region",
    "r",
    "--image",
    "i",
    "--pipeline_root",
    "gs://b/p",
    "--data",
    "gs://b/d",
    "--label_map",
    "gs://b/l.csv",
    "--serving_dir",
    "gs://b/s",
]


def _config(**settings) -> PipelineConfig:
    locations = Locations(pipeline_name="p", pipeline_root="r", data_root="d", serving_dir="s", label_map="l.csv")
    return PipelineConfig(locations=locations, trainer=TrainerSettings(num_labels=3)).with_settings(**settings)


PARSERS = {"run": run_command.parse_args, "compile": lambda argv: compile_command.parse_args(COMPILE_REQUIRED + argv)}


def _help(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        PARSERS[command](["--help"])
    return out.getvalue()


@pytest.mark.parametrize("command", ["run", pytest.param("compile", marks=KUBEFLOW)])
def test_help_lists_a_flag_for_every_flagged_setting_booleans_both_ways(command):
    text = _help(command)
    for name, field in SETTINGS.items():
        assert f"--{name} " in text or f"--{name}\n" in text or f"--{name}," in text, f"imat {command}: no --{name}"
        if kind_of(field) is bool:
            assert f"--no-{name}" in text, f"imat {command}: no --no-{name}"
    # Every trainer setting but the label count (the label map's) is a flag.
    assert set(TrainerSettings.__dataclass_fields__) - set(SETTINGS) == {"num_labels"}


def test_each_flags_help_is_its_fields_metadata():
    assert [name for name, field in SETTINGS.items() if not help_of(field)] == []
    text = " ".join(_help("run").split())
    pooling = " ".join(help_of(SETTINGS["pooling"]).split())
    assert f"--pooling POOLING {pooling} (default: 'avg')" in text
    assert "--augment, --no-augment " + " ".join(help_of(SETTINGS["augment"]).split()) in text


def _flags_for_every_setting():
    """A command line setting each flagged setting to a value other than its default."""
    argv, expected = [], {}
    for name, field in SETTINGS.items():
        default, kind = field.default, kind_of(field)
        if kind is bool:
            argv.append(f"--{name}" if not default else f"--no-{name}")
            expected[name] = not default
        elif kind is tuple:  # repeated: one value per use
            argv += [f"--{name}", "backbone=xception", f"--{name}", "loss=asl,seed=2"]
            expected[name] = ("backbone=xception", "loss=asl,seed=2")
        else:
            value = default + "x" if kind is str else default + (3 if kind is int else 0.25)
            argv += [f"--{name}", str(value)]
            expected[name] = value
    return argv, expected


@pytest.mark.parametrize("command", ["run", pytest.param("compile", marks=KUBEFLOW)])
def test_every_flag_parses_to_its_type_and_lands_in_its_section(command):
    argv, expected = _flags_for_every_setting()
    overrides = flags.config_overrides(PARSERS[command](argv))
    assert overrides == expected
    assert all(type(v) is kind_of(SETTINGS[k]) for k, v in overrides.items())
    config = _config(**overrides)
    assert {name: config.get(name) for name in overrides} == expected


def test_unset_flags_leave_the_config_alone_and_booleans_parse_both_ways():
    assert flags.config_overrides(run_command.parse_args([])) == {}
    assert flags.config_overrides(run_command.parse_args(["--augment"])) == {"augment": True}
    assert flags.config_overrides(run_command.parse_args(["--no-augment"])) == {"augment": False}
    with pytest.raises(SystemExit):
        run_command.parse_args(["--augment", "False"])  # a value after a switch is refused, not read as True


def _write_label_map(path: str, labels: int) -> str:
    with open(path, "w") as f:
        f.write("labelId,taskId,labelName,taskName\n")
        for i in range(1, labels + 1):
            f.write(f"{i},1,label {i},category\n")
    return path


def test_imat_run_builds_one_config_the_same_way_for_the_demo_and_for_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo_label_map = Workdir("work").label_map
    os.makedirs(os.path.dirname(demo_label_map))
    _write_label_map(demo_label_map, 4)
    demo = run_command.build_config(run_command.parse_args(["--workdir", "work", "--train_steps", "7"]))
    _write_label_map("lm.csv", 5)
    data = run_command.build_config(
        run_command.parse_args(["--workdir", "work", "--data", "d", "--label_map", "lm.csv", "--train_steps", "7"])
    )
    root = str(tmp_path / "work")
    for config in (demo, data):  # every location absolute and in the workdir's layout
        assert config.locations.pipeline_root.startswith(root) and config.locations.serving_dir.startswith(root)
        assert config.locations.similar_dir.startswith(root)
        assert config.trainer.train_steps == 7
    assert (demo.locations.pipeline_name, demo.trainer.num_labels, demo.trainer.image_size) == ("imat-demo", 4, 96)
    assert (data.locations.pipeline_name, data.trainer.num_labels, data.trainer.image_size) == ("imat", 5, 299)
    assert (data.locations.data_root, data.locations.label_map) == (str(tmp_path / "d"), str(tmp_path / "lm.csv"))


@pytest.mark.parametrize("command", ["run", pytest.param("compile", marks=KUBEFLOW)])
def test_an_unreadable_ensemble_member_is_a_user_error_before_anything_runs(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    _write_label_map("lm.csv", 5)
    where = ["--data", "d", "--label_map", "lm.csv", "--workdir", "w"]
    if command == "compile":
        where = ["--project", "p", "--region", "europe-west4", "--image", "img", "--pipeline_root", "gs://b/p"]
        where += ["--data", "gs://b/d", "--label_map", "gs://b/l.csv", "--num_labels", "5", "--output_dir", "out"]
        where += ["--serving_dir", "gs://b/s"]
    with pytest.raises(SystemExit) as e:
        imat.main([command, "--ensemble", "backbone=xception", "--ensemble", "foo=1"] + where)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"imat {command}: error: ensemble member 2 ('foo=1'): 'foo=1' is not key=value")
    assert sorted(os.listdir(tmp_path)) == ["lm.csv"]  # nothing written


def test_the_trainer_rebuilds_every_setting_it_was_given_through_json():
    from trainer.model import ModelConfig

    fields = TrainerSettings.__dataclass_fields__.values()
    changed = {
        f.name: (
            not f.default
            if kind_of(f) is bool
            else f.default + "x"
            if kind_of(f) is str
            else kind_of(f)(f.default + 3)
            if f.name != "num_labels"
            else 5
        )
        for f in fields
    }
    config = _config(**changed)
    custom = json.loads(json.dumps(config.trainer_custom_config()))
    assert custom["label_map"] == "l.csv"
    assert ModelConfig.from_custom_config(custom) == ModelConfig(**changed)
    with pytest.raises(ValueError, match="custom_config\\['augment'\\]: 'yes' is not true or false"):
        ModelConfig.from_custom_config({**custom, "augment": "yes"})


def test_ensemble_members_own_only_what_their_spec_names_with_their_types():
    config = _config(num_labels=5, dropout=0.3, ensemble=("backbone=xception, seed=2", "loss=asl,augment=true"))
    first, second = config.members()
    assert first.own == {"backbone": "xception", "seed": 2} and second.own == {"loss": "asl", "augment": True}
    assert (first.trainer.backbone, first.trainer.seed, first.trainer.loss, first.trainer.dropout) == (
        "xception",
        2,
        "bce",
        0.3,
    )
    assert (second.trainer.backbone, second.trainer.loss, second.trainer.augment) == ("inception_v3", "asl", True)
    # A member may name the run's own value: it is still the member's, not the run's.
    same = _config(ensemble=(f"head_learning_rate={config.trainer.head_learning_rate}",)).members()[0]
    assert same.own == {"head_learning_rate": config.trainer.head_learning_rate}
    for spec, message in (
        ("image_size=96", "not key=value with a key in"),
        ("seed=two", "seed: 'two' is not a int"),
        ("augment=maybe", "is not true or false"),
        ("backbone", "not key=value"),
    ):
        with pytest.raises(SettingsError, match=f"ensemble member 1.*{message}"):
            config.with_settings(ensemble=(spec,)).members()
    assert config.with_settings(ensemble=()).members() == []


@pytest.mark.parametrize("runtime_parameters", [False, True], ids=["local", "vertex"])
def test_a_members_own_learning_rate_is_not_replaced_by_the_runs(runtime_parameters):
    from pipeline.pipeline import Deployment, create_pipeline

    config = _config(
        num_labels=5,
        schema_path="schema.pbtxt",
        ensemble=("seed=1", "head_learning_rate=0.05", "fine_tune_learning_rate=0.0001"),
    )
    nodes = {n.id: n for n in create_pipeline(config, deployment=Deployment(runtime_parameters)).components}
    first, second, third = (nodes[f"Trainer_{i}"].exec_properties for i in (1, 2, 3))
    assert second["head_learning_rate"] == 0.05
    assert json.loads(second["custom_config"])["head_learning_rate"] == 0.05
    # The run's own default value, named by the member: the member's still, not the run's parameter.
    assert third["fine_tune_learning_rate"] == 0.0001 == config.trainer.fine_tune_learning_rate
    if runtime_parameters:  # the other members follow the run's parameter
        assert first["head_learning_rate"].name == "head_learning_rate"
        assert second["fine_tune_learning_rate"].name == "fine_tune_learning_rate"
    else:
        assert first["head_learning_rate"] == config.trainer.head_learning_rate
