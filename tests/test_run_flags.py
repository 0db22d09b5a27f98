"""imat run and imat compile take every PipelineConfig field as a flag, derived from the dataclass."""

import contextlib
import dataclasses
import io

import pytest

from cli import compile as compile_command
from cli import flags
from cli import run as run_command
from pipeline.config import PipelineConfig
from trainer.settings import TrainerSettings

FIELDS = {f.name: f for f in dataclasses.fields(PipelineConfig)}
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
# Where things are: each command's own flags set these fields. None: no flag, the command names it
# (imat run: "imat", or "imat-demo" without --data; imat compile: Dataflow's Beam args from its
# --dataflow_* flags).
LOCATION_FLAGS = {
    "run": {
        "pipeline_root": "--workdir",
        "serving_dir": "--workdir",
        "data_root": "--data",
        "label_map": "--label_map",
        "num_labels": "--label_map",
        "schema_path": "--schema",
        "beam_pipeline_args": "--beam_arg",
        "pipeline_name": None,
    },
    "compile": {
        "pipeline_root": "--pipeline_root",
        "serving_dir": "--serving_dir",
        "data_root": "--data",
        "label_map": "--label_map",
        "num_labels": "--num_labels",
        "schema_path": "--schema",
        "beam_pipeline_args": None,
        "pipeline_name": "--pipeline_name",
    },
}


def _config(**settings) -> PipelineConfig:
    return PipelineConfig(
        pipeline_name="p", pipeline_root="r", data_root="d", serving_dir="s", label_map="l.csv", **settings
    )


PARSERS = {"run": run_command.parse_args, "compile": lambda argv: compile_command.parse_args(COMPILE_REQUIRED + argv)}


def _help(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        PARSERS[command](["--help"])
    return out.getvalue()


@pytest.mark.parametrize("command", ["run", "compile"])
def test_help_lists_a_flag_for_every_field_of_the_config_booleans_both_ways(command):
    text = _help(command)
    for name, field in FIELDS.items():
        flag = LOCATION_FLAGS[command].get(name, f"--{name}")
        if flag is None:
            continue
        assert f"{flag} " in text or f"{flag}\n" in text or f"{flag}," in text, f"imat {command}: no flag for {name}"
        if field.type is bool:
            assert f"--no-{name}" in text, f"imat {command}: no --no-{name}"
    # Every trainer setting is a pipeline field, so it has its flag too.
    assert {f.name for f in dataclasses.fields(TrainerSettings)} <= set(FIELDS)


def test_each_flags_help_is_the_comment_beside_its_field():
    comments = flags.field_comments(PipelineConfig)
    assert [f.name for f in flags.setting_fields() if not comments.get(f.name)] == []
    assert comments["pooling"] == "of the backbone's last feature map: avg, max or avgmax (both, concatenated)"
    text = " ".join(_help("run").split())
    assert "--pooling POOLING of the backbone's last feature map: avg, max or avgmax" in text
    assert "(default: 'avg')" in text and "--augment, --no-augment random flip" in text


def _flags_for_every_field():
    """A command line setting each flagged field to a value other than its default."""
    argv, expected = [], {}
    for name, field in FIELDS.items():
        if name in flags.LOCATION_FIELDS:
            continue
        default = field.default
        if field.type is bool:
            argv.append(f"--{name}" if not default else f"--no-{name}")
            expected[name] = not default
        elif isinstance(default, tuple):  # repeated: one value per use
            argv += [f"--{name}", "backbone=xception", f"--{name}", "loss=asl,seed=2"]
            expected[name] = ("backbone=xception", "loss=asl,seed=2")
        else:
            value = default + "x" if isinstance(default, str) else default + (3 if isinstance(default, int) else 0.25)
            argv += [f"--{name}", str(value)]
            expected[name] = value
    return argv, expected


@pytest.mark.parametrize("command", ["run", "compile"])
def test_every_field_parses_to_its_type(command):
    argv, expected = _flags_for_every_field()
    overrides = flags.config_overrides(PARSERS[command](argv))
    assert overrides == expected
    assert all(type(v) is type(FIELDS[k].default) for k, v in overrides.items())
    assert set(flags.LOCATION_FIELDS) <= set(FIELDS)  # a renamed field cannot hide behind the list


def test_unset_flags_leave_the_config_alone_and_booleans_parse_both_ways():
    assert flags.config_overrides(run_command.parse_args([])) == {}
    assert flags.config_overrides(run_command.parse_args(["--augment"])) == {"augment": True}
    assert flags.config_overrides(run_command.parse_args(["--no-augment"])) == {"augment": False}
    with pytest.raises(SystemExit):
        run_command.parse_args(["--augment", "False"])  # a value after a switch is refused, not read as True


def test_the_trainer_rebuilds_every_setting_it_was_given_through_json():
    import json

    from trainer.model import ModelConfig

    changed = {
        f.name: (
            not f.default
            if f.type is bool
            else f.default + "x"
            if f.type is str
            else f.type(f.default + 3)
            if f.name != "num_labels"
            else 5
        )
        for f in dataclasses.fields(TrainerSettings)
    }
    config = _config(**changed)
    custom = json.loads(json.dumps(config.trainer_custom_config()))
    assert custom["label_map"] == "l.csv"
    assert ModelConfig.from_custom_config(custom) == ModelConfig(**changed)
    with pytest.raises(ValueError, match="custom_config\\['augment'\\]: 'yes' is not true or false"):
        ModelConfig.from_custom_config({**custom, "augment": "yes"})


def test_ensemble_members_override_only_trainer_settings_with_their_types():
    config = _config(num_labels=5, dropout=0.3, ensemble=("backbone=xception, seed=2", "loss=asl,augment=true"))
    first, second = config.member_configs()
    assert (first.backbone, first.seed, first.loss, first.dropout) == ("xception", 2, "bce", 0.3)
    assert (second.backbone, second.loss, second.augment) == ("inception_v3", "asl", True)
    assert first.ensemble == () and first.trainer_custom_config()["backbone"] == "xception"
    for spec, message in (
        ("image_size=96", "not key=value with a key in"),
        ("seed=two", "seed: 'two' is not a int"),
        ("augment=maybe", "is not true or false"),
        ("backbone", "not key=value"),
    ):
        with pytest.raises(ValueError, match=f"ensemble member 1.*{message}"):
            dataclasses.replace(config, ensemble=(spec,)).member_configs()
    assert dataclasses.replace(config, ensemble=()).member_configs() == []


@pytest.mark.parametrize("runtime_parameters", [False, True], ids=["local", "vertex"])
def test_a_members_own_learning_rate_is_not_replaced_by_the_runs(runtime_parameters):
    import json

    from pipeline.pipeline import Deployment, create_pipeline

    config = _config(num_labels=5, schema_path="schema.pbtxt", ensemble=("seed=1", "head_learning_rate=0.05"))
    nodes = {n.id: n for n in create_pipeline(config, deployment=Deployment(runtime_parameters)).components}
    first, second = (nodes[f"Trainer_{i}"].exec_properties for i in (1, 2))
    assert second["head_learning_rate"] == 0.05
    assert json.loads(second["custom_config"])["head_learning_rate"] == 0.05
    if runtime_parameters:  # the other members follow the run's parameter
        assert first["head_learning_rate"].name == "head_learning_rate"
        assert second["fine_tune_learning_rate"].name == "fine_tune_learning_rate"
    else:
        assert first["head_learning_rate"] == config.head_learning_rate
