"""Each pipeline and Trainer setting has its default in one place: trainer/settings.py or pipeline/config.py."""

import ast
import dataclasses
import glob
import os

from pipeline.config import PipelineConfig
from trainer.model import ModelConfig
from trainer.settings import MEMBER_SETTINGS, NOT_PER_MEMBER, TrainerSettings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("imat_common", "pipeline", "trainer", "components", "cli")
DEFINED_IN = ("trainer/settings.py", "pipeline/config.py")
# Declarations of the same name that are another setting: the similar-product index's own batch
# of images to embed.
OTHER_SETTINGS = {("components/similar/embed_job.py", "batch_size"), ("components/similar/component.py", "batch_size")}


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
    names = {f.name for f in dataclasses.fields(PipelineConfig) if f.default is not dataclasses.MISSING}
    files = [
        os.path.relpath(p, REPO)
        for package in PACKAGES
        for p in glob.glob(os.path.join(REPO, package, "**", "*.py"), recursive=True)
    ]
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
    pipeline_defaults = {f.name: f.default for f in dataclasses.fields(PipelineConfig)}
    assert all(pipeline_defaults[f.name] == f.default for f in dataclasses.fields(TrainerSettings))


def test_member_settings_are_the_trainer_settings_but_the_shared_data_and_run():
    names = [f.name for f in dataclasses.fields(TrainerSettings)]
    assert set(MEMBER_SETTINGS) | set(NOT_PER_MEMBER) == set(names)
    assert not set(MEMBER_SETTINGS) & set(NOT_PER_MEMBER) and "image_size" in NOT_PER_MEMBER
