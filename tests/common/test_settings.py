"""Each setting is declared once, with its help and roles in its field's metadata; everything else is derived.

The flags, the Trainer's ``custom_config``, the runtime parameters and the ensemble members'
keys come from the fields of ``PipelineConfig``'s sections (``imat_common/settings.py``); no
module keeps a list of setting names or a default of its own.
"""

import ast
import dataclasses
import glob
import json
import os

import pytest

from imat_common.settings import help_of, is_flag, is_per_member, is_runtime, name_of
from pipeline import run_parameters
from pipeline.config import PipelineConfig, demo_config
from tfx.types import standard_component_specs as specs
from trainer.model import ModelConfig
from trainer.settings import TrainerSettings, member_settings
from tests.helpers import REPO

PACKAGES = ("imat_common", "pipeline", "trainer", "components", "cli")
# Where settings are declared (and the demo's values of them).
DEFINED_IN = ("trainer/settings.py", "pipeline/config.py", "imat_common/settings.py")
# Declarations of the same name that are another setting: the similar-product index's own batch
# of images to embed.
OTHER_SETTINGS = {("components/similar/embed_job.py", "batch_size"), ("components/similar/component.py", "batch_size")}
INDEX = PipelineConfig.settings_index()
NAMES = set(INDEX)


def _files():
    return [
        os.path.relpath(p, REPO)
        for package in PACKAGES
        for p in glob.glob(os.path.join(REPO, package, "**", "*.py"), recursive=True)
    ]


def test_every_setting_has_one_public_name_and_help():
    assert len(NAMES) == sum(1 for _ in PipelineConfig.fields())  # settings_index raises on a duplicate
    assert {"train_steps", "image_size", "micro_f1_lower_bound", "ensemble", "ensemble_method"} <= NAMES
    assert [name for name, (_, field) in INDEX.items() if not help_of(field)] == []


def test_custom_config_is_every_trainer_setting_and_reads_back():
    config = demo_config("w", 7, schema_path="s.pbtxt")
    custom = json.loads(json.dumps(config.trainer_custom_config()))
    assert set(custom) == {f.name for f in dataclasses.fields(TrainerSettings)} | {"label_map"}
    assert ModelConfig.from_custom_config(custom) == ModelConfig(**dataclasses.asdict(config.trainer))


def test_runtime_parameters_are_the_runtime_settings_in_the_specs_and_the_compiled_dag():
    runtime = {name for name, (_, field) in INDEX.items() if is_runtime(field)}
    assert runtime == {
        "train_steps",
        "head_learning_rate",
        "fine_tune_learning_rate",
        "micro_f1_lower_bound",
        "baseline_margin",
    }
    trainer_extra = set(run_parameters.TrainerSpec.PARAMETERS) - set(specs.TrainerSpec.PARAMETERS)
    evaluator_extra = set(run_parameters.EvaluatorSpec.PARAMETERS) - set(specs.EvaluatorSpec.PARAMETERS)
    assert trainer_extra | evaluator_extra == runtime and not trainer_extra & evaluator_extra
    assert set(demo_config("w", 7).runtime_values()) == runtime

    from pipeline.pipeline import Deployment, create_pipeline
    from tfx.orchestration import data_types

    dag = create_pipeline(demo_config("w", 7, schema_path="s.pbtxt"), deployment=Deployment(runtime_parameters=True))
    parameters = {
        value.name
        for node in dag.components
        for value in node.exec_properties.values()
        if isinstance(value, data_types.RuntimeParameter)
    }
    assert parameters == runtime


def test_member_keys_are_the_per_member_settings():
    assert set(member_settings()) == {f.name for f in dataclasses.fields(TrainerSettings) if is_per_member(f)}
    assert {"backbone", "loss", "seed", "head_learning_rate", "train_steps"} <= set(member_settings())
    assert not {"num_labels", "image_size", "min_positives"} & set(member_settings())
    config = demo_config("w", 7, ensemble=("backbone=xception,train_steps=9",))
    (member,) = config.members()
    assert member.own == {"backbone": "xception", "train_steps": 9}
    assert (member.trainer.backbone, member.trainer.train_steps, member.trainer.image_size) == ("xception", 9, 96)


def test_locations_and_derived_values_are_not_flags():
    no_flag = {name for name, (_, field) in INDEX.items() if not is_flag(field)}
    assert no_flag == {f.name for f in dataclasses.fields(type(demo_config("w", 1).locations))} | {
        "num_labels",
        "beam_pipeline_args",
    }


def test_with_settings_changes_any_section_by_name_and_refuses_a_typo():
    config = demo_config("w", 7).with_settings(train_steps=5, warn_only=True, ensemble=["seed=1"], similar_dir="x")
    assert (config.trainer.train_steps, config.data.warn_only) == (5, True)
    assert (config.ensemble.members, config.locations.similar_dir) == (("seed=1",), "x")
    assert config.get("ensemble") == ("seed=1",)
    with pytest.raises(ValueError, match="unknown setting 'train_step'; did you mean train_steps"):
        config.with_settings(train_step=5)


def _string_constants(trees) -> dict:
    """Module-level ``NAME = "text"`` of every module: a list may spell a setting's name through one."""
    constants = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                if isinstance(node.value.value, str):
                    constants.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return constants


def _top_level_collections(tree, constants):
    """The strings of each collection assigned at module or class level (a kept list), with its line."""
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for statement in body:
            if not isinstance(statement, (ast.Assign, ast.AnnAssign)) or statement.value is None:
                continue
            strings = []
            for node in ast.walk(statement.value):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    strings.append(node.value)
                elif isinstance(node, (ast.Name, ast.Attribute)):
                    strings.append(constants.get(node.id if isinstance(node, ast.Name) else node.attr))
            yield statement.lineno, strings


def test_no_module_keeps_a_hand_list_of_setting_names():
    trees = {path: ast.parse(open(os.path.join(REPO, path)).read()) for path in _files()}
    constants = _string_constants(trees.values())
    found = [
        f"{path}:{line} {named}"
        for path, tree in trees.items()
        if path not in DEFINED_IN
        for line, strings in _top_level_collections(tree, constants)
        for named in [sorted(set(strings) & NAMES)]
        if len(named) >= 2
    ]
    assert found == []
    flags_source = open(os.path.join(REPO, "cli", "flags.py")).read()
    assert "re.match" not in flags_source and "inspect.getsource" not in flags_source


def _declared_defaults(path):
    """(name, line) of every class-level ``name: type = default`` and every @component parameter default."""
    tree = ast.parse(open(os.path.join(REPO, path)).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    yield item.target.id, item.lineno
        if isinstance(node, ast.FunctionDef) and any("component" in ast.unparse(d) for d in node.decorator_list):
            args = node.args.args
            for arg, _ in zip(args[len(args) - len(node.args.defaults) :], node.args.defaults):
                if "Parameter" in ast.unparse(arg.annotation or ast.Constant(None)):
                    yield arg.arg, node.lineno


def test_no_other_dataclass_or_component_repeats_a_settings_default():
    # Locations are not defaults: CloudConfig and Workdir name them for their own places.
    names = {
        field.name
        for section, field in PipelineConfig.fields()
        if section != "locations" and field.default is not dataclasses.MISSING
    }
    files = _files()
    assert "trainer/settings.py" in files and len(files) > 50
    repeated = [
        f"{path}:{line} {name}"
        for path in files
        if path not in DEFINED_IN
        for name, line in _declared_defaults(path)
        if name in names and (path, name) not in OTHER_SETTINGS
    ]
    assert repeated == []


def test_the_model_config_is_the_trainer_settings_with_nothing_added():
    assert [f.name for f in dataclasses.fields(ModelConfig)] == [f.name for f in dataclasses.fields(TrainerSettings)]
    assert all(name_of(f) == f.name for f in dataclasses.fields(TrainerSettings))


def test_a_search_range_is_declared_with_a_known_kind_and_tuned_needs_one():
    from imat_common.settings import setting

    with pytest.raises(ValueError, match="search"):
        setting(1, "x", search=("grid", 1, 2))
    with pytest.raises(ValueError, match="tuned needs one"):
        setting(1, "x", tuned=True)
    searched = [f.name for f in dataclasses.fields(TrainerSettings) if f.metadata.get("search")]
    assert "fine_tune_learning_rate" in searched and "num_labels" not in searched
