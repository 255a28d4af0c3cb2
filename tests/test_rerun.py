"""Changing the config redoes exactly the work the change affects (issue 4); another study, or the same
data prepared again, redoes none of it, and other data redoes every run (issue 19)."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_study, planned_jobs
from synthetic import write_synthetic_source


@pytest.fixture(scope="module")
def copies_plan_nothing(finished_study, tmp_path_factory):
    """What every test below starts from: a copy of the finished study plans nothing. Copies are identical
    (bytes, timestamps, Snakemake's records), so one is checked for all."""
    copied = copy_study(finished_study, tmp_path_factory.mktemp("checked") / "study")
    assert planned_jobs(copied.snakemake("-n")) == set(), "a finished study must plan nothing"


@pytest.fixture
def copy(copies_plan_nothing, finished_copy):
    """A private copy of the session's finished tiny study (timestamps and Snakemake's records kept)."""
    return finished_copy


def edit_config(study, change):
    config = study.config()
    change(config)
    study.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


# Rules that read no run: the data's, and the isolated step cost (redone when the grid's definitions change).
NOT_ANALYSIS = ("all", "prepare_data", "step_cost", "lr_sweep_report", "depth_report", "export_mlflow")


def analysis_rules(study):
    """Every rule that only reads finished grid runs: all rules but the data, training, step-cost and
    target rules, the learning-rate sweep's report (the sweep is off in these studies), the depth report
    (these studies train one depth) and the MLflow export (asked for by name, never part of `all`)."""
    listed = study.snakemake("--list-rules").stdout.split()
    return {rule for rule in listed if rule not in NOT_ANALYSIS and not rule.startswith("train")}


def trained(jobs):
    return {Path(output).parent.name for rule, output in jobs if rule == "train"}


def not_training(jobs):
    return {rule for rule, _ in jobs if rule not in ("train", "step_cost")}


def step_cost_redone(jobs):
    return any(rule == "step_cost" for rule, _ in jobs)


def runs(inits, optimizers, seeds):
    return {f"{i}_{o}_seed{s}" for i in inits for o in optimizers for s in seeds}


def test_changing_the_target_accuracy_reruns_only_the_analysis(copy):
    edit_config(copy, lambda c: c["report"].update(target_accuracy=0.6))
    jobs = planned_jobs(copy.snakemake("-n"))
    assert trained(jobs) == set()
    # the signal diagnostics do not use the target, so they need not be redone
    assert {"aggregate", "figures", "findings", "findings_html", "all"} == not_training(jobs)
    assert not_training(jobs) <= analysis_rules(copy) | {"all"}


def test_changing_adams_lr_retrains_only_the_adam_runs(copy):
    edit_config(copy, lambda c: c["optimizers"]["adam"]["kwargs"].update(lr=2.0e-3))
    jobs = planned_jobs(copy.snakemake("-n"))
    assert trained(jobs) == runs(["he", "xavier"], ["adam"], [1])
    assert not_training(jobs) == analysis_rules(copy) | {"all"}
    assert step_cost_redone(jobs)  # Adam's definition is part of what it measures


def test_adding_a_seed_trains_only_the_new_runs(copy):
    edit_config(copy, lambda c: c["grid"].update(seeds=[1, 2]))
    jobs = planned_jobs(copy.snakemake("-n"))
    assert trained(jobs) == runs(["he", "xavier"], ["sgd", "adam", "rmsprop"], [2])
    assert not_training(jobs) == analysis_rules(copy) | {"all"}
    assert not step_cost_redone(jobs)  # seeds do not change what a step costs


def test_adding_an_optimizer_defined_in_yaml_trains_only_its_runs(copy):
    def add_adamw(config):
        config["optimizers"]["adamw"] = {"class": "AdamW", "kwargs": {"lr": 1.0e-3, "weight_decay": 1.0e-2}}
        config["grid"]["optimizers"].append("adamw")

    edit_config(copy, add_adamw)
    assert trained(planned_jobs(copy.snakemake("-n"))) == runs(["he", "xavier"], ["adamw"], [1])
    copy.snakemake("--cores", "2")
    assert copy.metrics("he_adamw_seed1")["hyperparameters"]["weight_decay"] == 0.01
    # the study's progress counted exactly the runs this invocation trained
    plan = json.loads((copy.results / "progress" / "plan.json").read_text())
    assert plan["runs"] == {"he_adamw_seed1": 2, "xavier_adamw_seed1": 2}
    assert "he + adamw" in (copy.results / "findings.md").read_text()
    assert "adamw" in (copy.results / "combinations.csv").read_text()
    metrics_time = (copy.results / "runs" / "he_adamw_seed1" / "metrics.json").stat().st_mtime
    for figure in (copy.results / "figures").glob("*.png"):
        assert figure.stat().st_mtime >= metrics_time, f"{figure.name} was not redrawn with adamw"


def test_removing_an_init_trains_nothing_and_drops_it_from_the_report(copy):
    assert "xavier" in (copy.results / "findings.md").read_text()
    edit_config(copy, lambda c: c["grid"].update(inits=["he"]))
    jobs = planned_jobs(copy.snakemake("-n"))
    assert trained(jobs) == set()
    assert not_training(jobs) == analysis_rules(copy) | {"all"}
    plan = (copy.results / "progress" / "plan.json").read_bytes()
    copy.snakemake("--cores", "2")
    assert "xavier" not in (copy.results / "findings.md").read_text()
    # an invocation that trains nothing leaves the last training's plan alone
    assert (copy.results / "progress" / "plan.json").read_bytes() == plan
    assert "xavier" not in (copy.results / "summary.csv").read_text()


def test_reordering_keys_and_respelling_numbers_reruns_nothing(copy):
    text = copy.config_path.read_text()
    config = yaml.safe_load(text)
    reordered = {key: config[key] for key in reversed(list(config))}
    reordered["optimizers"]["adam"]["kwargs"] = dict(reversed(list(config["optimizers"]["adam"]["kwargs"].items())))
    dumped = yaml.safe_dump(reordered, sort_keys=False)
    assert "lr: 0.001" in dumped
    copy.config_path.write_text(dumped.replace("lr: 0.001", "lr: 1.0e-3").replace("lr: 0.01", "lr: 1.0e-2"))
    assert planned_jobs(copy.snakemake("-n")) == set()


def test_editing_training_code_reruns_exactly_the_runs_that_use_it(copy):
    code = copy.root / "src" / "fmnist_initopt" / "training.py"
    code.write_text(code.read_text() + "\n# a harmless edit\n")
    jobs = planned_jobs(copy.snakemake("-n"))
    assert trained(jobs) == runs(["he", "xavier"], ["sgd", "adam", "rmsprop"], [1])
    assert not any(rule == "prepare_data" for rule, _ in jobs)
    # accepting the edit without retraining, as the README documents
    copy.snakemake("--cores", "1", "--touch")
    assert trained(planned_jobs(copy.snakemake("-n"))) == set()
    # and forcing a retrain of one run when it is wanted
    forced = planned_jobs(copy.snakemake("-n", "--forcerun", "results/main/runs/he_sgd_seed1/metrics.json"))
    assert trained(forced) == {"he_sgd_seed1"}


@pytest.mark.parametrize(
    ("module", "rerun"),
    [
        ("signal_analysis", {"signal_report", "findings", "findings_html"}),
        ("figures", {"figures", "findings", "findings_html"}),
        ("findings", {"findings", "findings_html"}),
        ("html_report", {"findings_html"}),
        # the epoch lines and the study's time left shape no result
        ("progress", set()),
    ],
)
def test_editing_analysis_code_reruns_exactly_the_rules_that_use_it(copy, module, rerun):
    code = copy.root / "src" / "fmnist_initopt" / f"{module}.py"
    code.write_text(code.read_text() + "\n# a harmless edit\n")
    jobs = planned_jobs(copy.snakemake("-n"))
    assert {rule for rule, _ in jobs} - {"all"} == rerun


# --- Studies and data (issue 19) ---------------------------------------------------------------------
def finished_state(study):
    """Every file of the study's directory, with its bytes and modification time."""
    return {
        path.relative_to(study.results): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(study.results.rglob("*"))
        if path.is_file()
    }


def test_the_presets_each_name_a_study_of_their_own():
    names = {
        preset: yaml.safe_load((REPO / "config" / f"{preset}.yaml").read_text()).get("study")
        for preset in ("config", "quick", "depth", "lr-sweep")
    }
    assert names == {"config": "main", "quick": "quick", "depth": "depth", "lr-sweep": "lr-sweep"}


def test_a_quick_study_after_a_finished_study_retrains_nothing_of_it_and_leaves_its_findings_byte_identical(copy):
    before = finished_state(copy)
    # a preview of the same runs (he_adam_seed1 is also a run of the main study), as config/quick.yaml is
    (copy.root / "preview.yaml").write_text(
        yaml.safe_dump({"study": "quick", "grid": {"inits": ["he"], "optimizers": ["adam"]}, "training": {"epochs": 1}})
    )
    preview = ("--configfile", "preview.yaml")
    planned = planned_jobs(copy.snakemake("-n", *preview))
    assert trained(planned) == {"he_adam_seed1"}
    assert all(output.startswith(("results/quick/", "data/")) for _, output in planned if output), planned
    copy.snakemake("--cores", "2", *preview)
    assert (copy.root / "results" / "quick" / "findings.md").is_file()
    assert (copy.root / "results" / "quick" / "runs" / "he_adam_seed1" / "metrics.json").is_file()
    # back to the main study: nothing to redo, not a byte or a timestamp changed
    assert planned_jobs(copy.snakemake("-n")) == set()
    assert finished_state(copy) == before


def test_identical_data_prepared_again_retrains_nothing(copy):
    findings = (copy.results / "findings.md").read_bytes()
    # the documented fix for damaged arrays is to delete them; deleting all the data costs no run either
    shutil.rmtree(copy.root / "data" / "prepared")
    assert planned_jobs(copy.snakemake("-n")) == set()
    shutil.rmtree(copy.root / "data")
    assert planned_jobs(copy.snakemake("-n")) == set()
    # with a seed added, only the new runs train; the first of them fetches and decodes the data again
    edit_config(copy, lambda c: c["grid"].update(seeds=[1, 2]))
    jobs = planned_jobs(copy.snakemake("-n"))
    assert trained(jobs) == runs(["he", "xavier"], ["sgd", "adam", "rmsprop"], [2])
    assert not any(rule == "prepare_data" for rule, _ in jobs)
    copy.snakemake("--cores", "1", "results/main/runs/he_adam_seed2/metrics.json")
    assert copy.metrics("he_adam_seed2")["spec"]["data"] == copy.checksums
    assert len(list((copy.root / "data" / "prepared").glob("*/manifest.json"))) == 1
    edit_config(copy, lambda c: c["grid"].update(seeds=[1]))
    assert planned_jobs(copy.snakemake("-n")) == set()
    assert (copy.results / "findings.md").read_bytes() == findings


def test_other_data_retrains_every_run(copy, tmp_path):
    other = tmp_path / "other-data"
    checksums = write_synthetic_source(other, seed=1)
    assert checksums != copy.checksums
    edit_config(copy, lambda c: c["data"].update(sources=[str(other)], sha256=checksums))
    jobs = planned_jobs(copy.snakemake("-n"))
    assert trained(jobs) == runs(["he", "xavier"], ["sgd", "adam", "rmsprop"], [1])
    assert sum(rule == "prepare_data" for rule, _ in jobs) == 1  # on this host: it fetches the other data
