"""imat run and imat compile take every overridable PipelineConfig field, booleans included."""
import dataclasses

import pytest

from kubeflow import compile_command
from pipeline import run_command
from pipeline.config import PipelineConfig

FIELDS = {f.name: f for f in dataclasses.fields(PipelineConfig)}
COMPILE_REQUIRED = ["--project", "p", "--region", "r", "--image", "i", "--pipeline_root", "gs://b/p",
                    "--data", "gs://b/d", "--label_map", "gs://b/l.csv", "--serving_dir", "gs://b/s"]


def _flags_for_every_field():
    """A command line setting each overridable field to a value other than its default."""
    argv, expected = [], {}
    for name in run_command.OVERRIDABLE:
        default = FIELDS[name].default
        if isinstance(default, bool):
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


@pytest.mark.parametrize("parse", [run_command.parse_args,
                                   lambda argv: compile_command.parse_args(COMPILE_REQUIRED + argv)],
                         ids=["run", "compile"])
def test_every_overridable_field_is_a_flag_of_its_type(parse):
    argv, expected = _flags_for_every_field()
    args = parse(argv)
    assert run_command.config_overrides(args) == expected
    assert all(type(v) is type(FIELDS[k].default) for k, v in run_command.config_overrides(args).items())


def test_unset_flags_leave_the_config_alone_and_booleans_parse_both_ways():
    assert run_command.config_overrides(run_command.parse_args([])) == {}
    assert run_command.config_overrides(run_command.parse_args(["--augment"])) == {"augment": True}
    assert run_command.config_overrides(run_command.parse_args(["--no-augment"])) == {"augment": False}
    with pytest.raises(SystemExit):
        run_command.parse_args(["--augment", "False"])  # a value after a switch is refused, not read as True


def test_training_input_settings_reach_the_trainer():
    config = PipelineConfig(pipeline_name="p", pipeline_root="r", data_root="d", serving_dir="s", label_map="l.csv",
                            num_labels=5, augment=True, shuffle_buffer=777, seed=3)
    custom = config.trainer_custom_config()
    assert (custom["augment"], custom["shuffle_buffer"], custom["seed"]) == (True, 777, 3)


def test_ensemble_members_override_only_trainer_settings_with_their_types():
    config = PipelineConfig(pipeline_name="p", pipeline_root="r", data_root="d", serving_dir="s", label_map="l.csv",
                            num_labels=5, dropout=0.3, ensemble=("backbone=xception, seed=2", "loss=asl,augment=true"))
    first, second = config.member_configs()
    assert (first.backbone, first.seed, first.loss, first.dropout) == ("xception", 2, "bce", 0.3)
    assert (second.backbone, second.loss, second.augment) == ("inception_v3", "asl", True)
    assert first.ensemble == () and first.trainer_custom_config()["backbone"] == "xception"
    for spec, message in (("image_size=96", "not key=value with a key in"), ("seed=two", "seed: 'two' is not a int"),
                          ("augment=maybe", "is not true or false"), ("backbone", "not key=value")):
        with pytest.raises(ValueError, match=f"ensemble member 1.*{message}"):
            dataclasses.replace(config, ensemble=(spec,)).member_configs()
    assert dataclasses.replace(config, ensemble=()).member_configs() == []
