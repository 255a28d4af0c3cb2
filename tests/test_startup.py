"""Snakemake's parse stays light: the modules it imports do not import PyTorch, and the config's
PyTorch cross-check, once passed, is not repeated for the same inputs (issue 12)."""

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from conftest import REPO

from fmnist_initopt.config import PASSED_CHECKS_FILE, ConfigError, pytorch_check_key, validated_config

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def repo_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_modules_the_workflow_reads_at_start_up_do_not_import_pytorch():
    imported = python(
        """
        import sys
        import fmnist_initopt.config, fmnist_initopt.cost, fmnist_initopt.data, fmnist_initopt.study
        print(sorted(name for name in ("torch", "torchvision") if name in sys.modules))
        """
    )
    assert imported == "[]"


def test_a_passed_pytorch_check_is_remembered_and_not_repeated(tmp_path):
    check = f"""
        import sys, yaml
        from fmnist_initopt.config import validated_config
        config = yaml.safe_load(open({str(REPO / "config" / "config.yaml")!r}))
        validated_config(config, {str(SCHEMA)!r}, cache_dir={str(tmp_path)!r})
        print("torch" in sys.modules)
        """
    assert python(check) == "True"  # the first check builds every init and optimizer with PyTorch
    assert python(check) == "False"  # the same inputs again: nothing to import
    assert len(json.loads((tmp_path / PASSED_CHECKS_FILE).read_text())) == 1


def test_a_changed_config_is_checked_again_and_a_failing_one_is_never_remembered(tmp_path):
    validated_config(repo_config(), SCHEMA, cache_dir=tmp_path)
    bad = repo_config()
    bad["optimizers"]["adam"]["kwargs"]["nesterov"] = True  # the schema allows it, torch.optim.Adam does not
    for _ in range(2):
        with pytest.raises(ConfigError, match="optimizers.adam.kwargs"):
            validated_config(copy.deepcopy(bad), SCHEMA, cache_dir=tmp_path)
    assert len(json.loads((tmp_path / PASSED_CHECKS_FILE).read_text())) == 1


def test_the_check_key_follows_what_the_check_uses_and_nothing_else(tmp_path, monkeypatch):
    config = validated_config({**repo_config(), "device": "cpu"}, SCHEMA, cache_dir=tmp_path)  # defaults filled in
    key = pytorch_check_key(config)

    def key_after(change) -> str:
        changed = copy.deepcopy(config)
        change(changed)
        return pytorch_check_key(changed)

    # what the runs do with the inits and optimizers is not the check's business
    assert key_after(lambda c: c["grid"].update(seeds=[4, 5])) == key
    assert key_after(lambda c: c["training"].update(epochs=1)) == key
    # the check's own inputs: the definitions, the model (one extra conv layer stands for every depth), the device
    assert key_after(lambda c: c["inits"]["he"]["kwargs"].update(mode="fan_out")) != key
    assert key_after(lambda c: c["optimizers"]["adam"]["kwargs"].update(lr=0.01)) != key
    deeper = key_after(lambda c: c["model"].update(extra_conv_layers=[0, 2]))
    assert deeper != key
    assert key_after(lambda c: c["model"].update(extra_conv_layers=[0, 8])) == deeper
    auto = key_after(lambda c: c.update(device="auto"))
    assert auto != key
    # the GPUs a job may use decide where `auto` trains, not where `cpu` does
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert key_after(lambda c: c.update(device="auto")) != auto
    assert pytorch_check_key(config) == key
