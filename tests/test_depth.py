"""The depth axis (issue 14): the model variants, a run's identity, the workflow's targets, the depth section."""

import math
import re
from pathlib import Path

import jsonschema
import pytest
import torch
import yaml
from conftest import REPO, make_study, metrics_schema, planned_jobs, reference_loop, synthetic_splits
from fake_metrics import fake_metrics
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fmnist_initopt import depth_analysis, depth_findings, stats, study
from fmnist_initopt.config import ConfigError, validated_config
from fmnist_initopt.diagnostics import signal_snapshot
from fmnist_initopt.model import CNN, apply_init, build_model, parameter_count
from fmnist_initopt.study import canonical_json, run_spec, run_spec_from_json
from fmnist_initopt.training import train_run

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
INITS = {
    "default": ("default", {}),
    "he": ("kaiming_normal_", {"mode": "fan_in", "nonlinearity": "relu"}),
    "xavier": ("xavier_normal_", {}),
}


BriefCNN = reference_loop().CNN


def brief_model(init: str, seed: int) -> BriefCNN:
    """What build_model made before depth existed: the global seed for PyTorch's init, then the init."""
    torch.manual_seed(seed)
    return apply_init(BriefCNN(), *INITS[init], torch.Generator().manual_seed(seed))


def conv_parameters(in_channels: int, out_channels: int) -> int:
    return in_channels * out_channels * 3 * 3 + out_channels


# --- The model -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", sorted(INITS))
def test_depth_zero_is_the_brief_cnn_bit_for_bit(init):
    ours, brief = build_model(*INITS[init], seed=7), brief_model(init, seed=7)
    assert list(ours.state_dict()) == list(brief.state_dict())
    for (name, value), expected in zip(ours.state_dict().items(), brief.state_dict().values()):
        assert torch.equal(value, expected), name
    images = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ours(images), brief(images))


@pytest.mark.parametrize("extra", [1, 3])
def test_extra_layers_are_64_channel_3x3_convs_between_conv2_and_fc1(extra):
    model = build_model(*INITS["he"], seed=0, extra_conv_layers=extra)
    extra_names = [f"conv{3 + i}" for i in range(extra)]
    layers = [name for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    assert layers == ["conv1", "conv2", *extra_names, "fc1", "fc2"]
    for name in extra_names:
        conv = getattr(model, name)
        assert (conv.weight.shape, conv.padding) == ((64, 64, 3, 3), (1, 1))
        assert torch.count_nonzero(conv.bias) == 0
    # depth is the only change: no normalisation, the same pooling, the same classifier
    kinds = {type(module) for module in model.modules()} - {CNN}
    assert kinds == {nn.Conv2d, nn.MaxPool2d, nn.Linear}
    brief = conv_parameters(1, 32) + conv_parameters(32, 64) + (3136 * 128 + 128) + (128 * 10 + 10)
    assert parameter_count(model) == brief + extra * conv_parameters(64, 64)
    assert parameter_count(build_model(*INITS["he"], seed=0)) == brief == 421_642
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert " -> ".join(f"{name} conv 64->64 3x3 + ReLU" for name in extra_names) in model.describe()


def test_extra_layers_carry_the_he_variance():
    model = build_model(*INITS["he"], seed=3, extra_conv_layers=4)
    for index in range(3, 7):
        weight = getattr(model, f"conv{index}").weight
        expected = math.sqrt(2.0 / (64 * 9))
        assert abs(weight.std().item() - expected) < 5 * expected / math.sqrt(2 * weight.numel())


def test_xavier_logits_shrink_relative_to_he_with_depth():
    """The reason for the depth axis: Xavier halves the signal's variance per ReLU layer, He keeps it."""
    images = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(64) % 10

    def logit_ratio(extra):
        std = {
            init: signal_snapshot(build_model(*INITS[init], seed=2, extra_conv_layers=extra), images, labels)[
                "activation_std"
            ]["fc2"]
            for init in ("he", "xavier")
        }
        return std["xavier"] / std["he"]

    # eight more layers: about 2**-4 = 0.0625 in std; a quarter of that margin absorbs the sampling
    assert logit_ratio(8) < 0.25 * logit_ratio(0)


# --- A run's identity ----------------------------------------------------------------------------------

# The RunSpec fields other than the model settings (the data's checksums included, issue 19): a depth-0 spec
# must be exactly these.
FIELDS_BEFORE_DEPTH = [
    "init",
    "init_function",
    "init_kwargs",
    "optimizer",
    "optimizer_class",
    "optimizer_kwargs",
    "seed",
    "epochs",
    "batch_size",
    "split",
    "precision",
    "data",
]


def study_config(**model):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if model:
        config["model"] = model
    return validated_config(config, SCHEMA)


def test_the_brief_cnn_keeps_its_spec_string_and_run_id():
    spec = run_spec(study_config(), "he", "adam", 1)
    before = canonical_json({name: getattr(spec, name) for name in FIELDS_BEFORE_DEPTH})
    assert canonical_json(spec.as_dict()) == before
    assert spec.run_id == "he_adam_seed1"
    assert run_spec_from_json(before) == spec


def test_a_depth_is_part_of_the_spec_the_fingerprint_and_the_name():
    config = study_config(extra_conv_layers=[0, 4])
    shallow, deep = run_spec(config, "he", "adam", 1, 0), run_spec(config, "he", "adam", 1, 4)
    assert deep.as_dict()["model"] == {"extra_conv_layers": 4}
    assert deep.fingerprint() != shallow.fingerprint()
    assert deep.run_id == "he_adam_depth4_seed1"
    assert run_spec_from_json(canonical_json(deep.as_dict())) == deep


def test_model_suffixes_round_trip_and_reject_other_spellings():
    for depth in (0, 1, 12):
        assert study.depth_of_suffix(study.model_suffix(depth)) == depth
    for bad in ("_depth0", "_depth04", "depth4", "_depth"):
        with pytest.raises(ValueError, match="model suffix"):
            study.depth_of_suffix(bad)


def test_depths_default_to_the_brief_cnn_and_the_main_depth_prefers_it():
    assert study.depths(study_config()) == [0]
    assert study.depths(study_config(extra_conv_layers=[8, 0, 4])) == [0, 4, 8]
    assert study.main_depth(study_config(extra_conv_layers=[8, 0, 4])) == 0
    assert study.main_depth(study_config(extra_conv_layers=[8, 4])) == 4


@pytest.mark.parametrize("depths", [[], [-1], [2, 2], "4"])
def test_bad_depths_name_the_key(depths):
    with pytest.raises(ConfigError, match=r"model\.extra_conv_layers"):
        study_config(extra_conv_layers=depths)


def test_a_deep_run_records_its_model_and_depth(tmp_path):
    spec = run_spec(study_config(), "xavier", "sgd", 1, depth=2)
    spec = type(spec)(**{**vars(spec), "epochs": 1, "batch_size": 64})
    torch.set_num_threads(1)
    metrics = train_run(spec, synthetic_splits(n_train=228, n_test=50), torch.device("cpu"))
    metrics["environment"] = {
        **{key: "x" for key in ("python", "torch", "torchvision", "snakemake", "device_name", "host", "git_commit")},
        "device": "cpu",
        "threads": 1,
    }
    jsonschema.validate(metrics, metrics_schema())
    assert metrics["run"]["depth"] == 2 and metrics["run"]["id"] == "xavier_sgd_depth2_seed1"
    model = build_model(spec.init_function, spec.init_kwargs, spec.seed, 2)
    assert metrics["model"] == {"extra_conv_layers": 2, "description": model.describe(), "parameters": 495_498}
    assert metrics["diagnostics"]["layers"] == ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"]


# --- The workflow --------------------------------------------------------------------------------------


def trained_runs(jobs):
    return {Path(output).parent.name for rule, output in jobs if rule == "train"}


def test_two_depths_plan_every_run_at_both_and_the_depth_report(tmp_path, synthetic_source):
    overrides = {"grid": {"inits": ["he", "xavier"], "optimizers": ["adam"]}, "model": {"extra_conv_layers": [0, 2]}}
    deep = make_study(tmp_path / "deep", synthetic_source, overrides)
    jobs = planned_jobs(deep.snakemake("-n"))
    assert trained_runs(jobs) == {
        "he_adam_seed1",
        "xavier_adam_seed1",
        "he_adam_depth2_seed1",
        "xavier_adam_depth2_seed1",
    }
    assert ("depth_report", "results/main/figures/depth.png") in jobs
    # the main report reads the brief's CNN only, so it never mixes depths
    planned = deep.snakemake("-n", "-p", "results/main/summary.csv").stdout
    main = [line for line in planned.splitlines() if "input:" in line]
    assert any("he_adam_seed1" in line for line in main) and not any("depth2" in line for line in main)


def test_adding_a_depth_trains_only_its_runs(finished_copy):
    # the session's tiny study at the brief's depth, every run finished (conftest.finished_study)
    shallow = finished_copy
    # everything `all` needs, finished or not: one depth plans no depth report
    assert "depth_report" not in {rule for rule, _ in planned_jobs(shallow.snakemake("-n", "--forceall"))}
    shallow.write_config({"model": {"extra_conv_layers": [0, 3]}})
    grid = shallow.config()["grid"]
    assert trained_runs(planned_jobs(shallow.snakemake("-n"))) == {
        f"{init}_{optimizer}_depth3_seed1" for init in grid["inits"] for optimizer in grid["optimizers"]
    }


# --- The depth section ---------------------------------------------------------------------------------

SEEDS = range(1, 9)
# Fewer resamples than the report's keep the bootstraps quick; the per-optimizer tests (8 pairs, 256 sign
# flips) stay exact, and the pooled ones' p-value floor (about 1/1000) stays far below the alpha.
RESAMPLES = 999


def section_of(runs, confidence=0.95):
    return depth_findings.depth_section(runs, confidence, n_resamples=RESAMPLES)


def wobble(seed: int) -> float:
    """Seed noise of either sign, the same for every combination of a seed."""
    return 0.004 * ((seed * 7) % 5 - 2)


def noise(seed: int, init: str, optimizer: str) -> float:
    """Noise in which init is not favoured: its sign alternates with the seed."""
    return 0.003 * (-1) ** (seed + len(init) + len(optimizer))


def fake_depth_runs(depths, seeds=SEEDS, stuck=lambda depth, init, optimizer: False):
    """he/xavier x sgd/adam runs; a `stuck` combination stays at chance, the others train to ~0.85."""
    runs = []
    for depth in depths:
        for init in ("he", "xavier"):
            for optimizer in ("sgd", "adam"):
                for seed in seeds:
                    if stuck(depth, init, optimizer):
                        accuracy = [0.10 + wobble(seed) / 4, 0.10 + wobble(seed) / 4]
                    else:
                        accuracy = [0.70 + wobble(seed), 0.85 + wobble(seed) + noise(seed, init, optimizer)]
                    runs.append(fake_metrics(init, optimizer, seed, accuracy, depth=depth))
    return runs


def deep_xavier_sgd_stuck(depth, init, optimizer):
    return depth == 8 and init == "xavier" and optimizer == "sgd"


def test_the_fake_runs_are_valid_metrics():
    for metrics in fake_depth_runs([0, 8], seeds=[1]):
        jsonschema.validate(metrics, metrics_schema())


def test_the_section_finds_the_depth_where_init_decides_and_the_optimizer_that_hides_it():
    runs = fake_depth_runs([0, 4, 8], stuck=deep_xavier_sgd_stuck)
    section = section_of(runs)
    assert section.startswith(depth_analysis.HEADING)
    assert "**8 did not train**" in section
    assert "xavier + sgd: 0/8 trained, **8 did not train**" in section
    assert "the init effect is larger than seed noise from depth 8 on: detected at 1 of 3 depths" in section
    assert "detected under sgd; not detected under adam (adaptive)" in section
    assert "the adaptive step sizes of adam hide the init effect at this depth" in section
    # the signal ratios are the fake diagnostics' own: 0.2 / 1.3 at depth 0, times 0.7 per extra layer
    for depth in (0, 4, 8):
        assert f"{0.2 / 1.3 * 0.7**depth:.3g} at depth {depth}" in section


def test_the_effect_tables_agree_with_the_stats_module():
    table = depth_analysis.depth_table(fake_depth_runs([0, 8], stuck=deep_xavier_sgd_stuck))
    effects = depth_analysis.init_effects_by_depth(table, "final_val_accuracy", 0.95, RESAMPLES)
    assert [(e.depth, e.detected) for e in effects] == [(0, False), (8, True)]
    deep = effects[1]
    final = table[table["depth"] == 8].groupby("init")["final_val_accuracy"].mean()
    assert deep.reference == "he"
    assert deep.pooled[0].estimate == pytest.approx(final["xavier"] - final["he"])
    assert deep.detected_under("sgd") and not deep.detected_under("adam")


def test_no_effect_at_any_depth_is_said_so():
    section = section_of(fake_depth_runs([0, 8]))
    assert "at no depth is the init effect larger than seed noise" in section
    assert "Every run trained" in section
    assert "hide the init effect at this depth" not in section and "per optimizer:" not in section


def test_every_run_at_chance_is_reported_as_nothing_trained():
    runs = fake_depth_runs([0, 8], stuck=lambda *_: True)
    section = section_of(runs)
    assert "**No run trained at any depth**" in section
    assert "larger than seed noise" not in section
    assert "0/8 trained, **8 did not train**" in section


def test_one_depth_says_the_depth_question_cannot_be_answered():
    section = section_of(fake_depth_runs([4], stuck=lambda d, i, o: i == "xavier"))
    assert "Only depth 4 was trained" in section
    assert "from depth 4 on" not in section
    # the effect at that one depth is still tested
    assert "the init effect is larger than seed noise at depth 4, the only depth trained" in section


def test_one_seed_tests_nothing():
    section = section_of(fake_depth_runs([0, 8], seeds=[1], stuck=deep_xavier_sgd_stuck))
    assert "seed-to-seed noise cannot be estimated, so no init effect is tested" in section
    assert "different" not in section and "not detected" not in section


def test_a_diverged_run_is_counted_and_left_out_of_the_accuracies():
    runs = fake_depth_runs([0, 8], seeds=[1, 2])
    runs.append(fake_metrics("xavier", "adam", 3, [0.5], diverged_at=(2, 7), depth=8))
    summary = depth_analysis.outcome_summary(depth_analysis.depth_table(runs)).set_index(["depth", "init", "optimizer"])
    row = summary.loc[(8, "xavier", "adam")]
    assert (row["runs"], row["trained"], row["diverged"]) == (3, 2, 1)
    assert row["final_val_accuracy_min"] > 0.8
    assert "**1 diverged**" in section_of(runs)


@pytest.mark.parametrize(
    "runs",
    [
        fake_depth_runs([0, 4, 8], seeds=[1, 2], stuck=deep_xavier_sgd_stuck),
        fake_depth_runs([0], seeds=[1], stuck=lambda *_: True),
    ],
)
def test_the_figure_is_drawn_for_studies_and_degenerate_cases(tmp_path, runs):
    path = tmp_path / "depth.png"
    depth_analysis.depth_figure(runs, path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_too_few_seeds_per_optimizer_says_how_many_would_do():
    section = section_of(fake_depth_runs([0, 8], seeds=[1, 2, 3], stuck=deep_xavier_sgd_stuck))
    # pooled: 2 comparisons (one per depth) of 3 seeds (the unit): smallest adjusted p 2/8 * 2 = 0.5;
    # 2 / 2**n * 2 <= 0.05 needs 2**n >= 80, so 7 seeds could
    assert (
        "Pooled over optimizers, 3 seeds cannot show any effect after Holm over 2 depths "
        "(the smallest possible adjusted p is 0.5, alpha 0.05); 7 seeds could." in section
    )
    # per optimizer: 4 comparisons of 3 seeds: 2/8 * 4 = 1; 2 / 2**n * 4 <= 0.05 needs 2**n >= 160: 8 seeds
    assert "Per optimizer, 3 seeds cannot show any effect after Holm over 4 (depth, optimizer) cells" in section
    assert "1, alpha 0.05); 8 seeds could. Which optimizers hide the init effect is therefore not tested" in section
    assert "hide the init effect at this depth" not in section


def test_the_cannot_show_line_is_only_where_nothing_could_be_detected():
    # 8 seeds: the pooled family detects depth 8's effect, so it never says that it cannot show any effect
    section = section_of(fake_depth_runs([0, 4, 8], stuck=deep_xavier_sgd_stuck))
    assert "detected at 1 of 3 depths" in section and "cannot show any effect" not in section


# --- Its sentences, generated (issue 18: each once contradicted its numbers) ------------------------------


def test_an_optimizer_with_the_same_effect_does_not_hide_it():
    # the init effect is -0.06 under sgd and under adam; adam lost three seeds to divergence, so its own
    # comparison does not detect it: that is a non-rejection, not evidence that adam hides the effect
    runs = []
    for seed in SEEDS:
        for optimizer in ("sgd", "adam"):
            for init in ("he", "xavier"):
                if optimizer == "adam" and seed > 5:
                    runs.append(fake_metrics(init, optimizer, seed, [0.5], diverged_at=(2, 1), epochs=2, depth=8))
                    continue
                final = 0.85 - 0.06 * (init == "xavier") + wobble(seed) + noise(seed, init, optimizer) / 3
                runs.append(fake_metrics(init, optimizer, seed, [0.7, final], depth=8))
    section = section_of(runs)
    assert "detected under sgd; not detected under adam (adaptive)" in section
    assert "adam's effect is not shown to be smaller than sgd's" in section
    assert "hide the init effect at this depth" not in section


def test_an_optimizer_whose_runs_diverged_is_untestable_not_hiding():
    runs = fake_depth_runs([8], stuck=deep_xavier_sgd_stuck)
    runs = [r for r in runs if not (r["run"]["optimizer"] == "adam" and r["run"]["init"] == "xavier")]
    runs += [fake_metrics("xavier", "adam", seed, [0.5], diverged_at=(2, 1), epochs=2, depth=8) for seed in SEEDS]
    section = section_of(runs)
    assert "detected under sgd; untestable under adam (adaptive)" in section
    assert "hide" not in section.split("### Verdict", 1)[1].replace("hides the effect is tested", "")


@st.composite
def depth_studies(draw):
    """he/xavier x sgd/adam at 1-3 depths and 2-8 seeds: random stuck and diverged combinations, random effects."""
    depths = draw(st.sampled_from([[0], [0, 4], [0, 4, 8]]))
    seeds = range(1, draw(st.integers(2, 8)) + 1)
    cells = [(d, i, o) for d in depths for i in ("he", "xavier") for o in ("sgd", "adam")]
    stuck = set(draw(st.lists(st.sampled_from(cells), max_size=3)))
    doomed = set(draw(st.lists(st.sampled_from(cells), max_size=2)))
    effect = draw(st.floats(0, 0.05))
    runs = []
    for depth, init, optimizer in cells:
        for seed in seeds:
            if (depth, init, optimizer) in doomed:
                runs.append(fake_metrics(init, optimizer, seed, [0.5], diverged_at=(2, 1), epochs=2, depth=depth))
                continue
            final = 0.10 if (depth, init, optimizer) in stuck else 0.85 - effect * (init == "xavier")
            accuracy = [0.7 + wobble(seed), final + wobble(seed) + noise(seed, init, optimizer)]
            runs.append(fake_metrics(init, optimizer, seed, accuracy, depth=depth))
    return runs


@settings(max_examples=15)
@given(depth_studies())
def test_depth_sentences_follow_their_tests(runs):
    section = section_of(runs)
    for line in section.splitlines():
        for adaptive in ("adam",):
            if f"the adaptive step sizes of {adaptive} hide" in line:
                assert f"not detected under {adaptive} (adaptive)" in line  # its own test did not reject
                assert f"untestable under {adaptive}" not in line.split(";")[0]
                assert re.search(rf"the init effect is smaller under {adaptive} than under \w+ .*: different\)", line)
    table = depth_analysis.depth_table(runs)
    for metric in depth_analysis.METRIC_LABELS:
        effects = depth_analysis.init_effects_by_depth(table, metric, 0.95, RESAMPLES)
        tested = [e for e in effects if e.reference is not None and e.pooled]
        for families in (lambda e: [e.pooled], lambda e: list(e.per_optimizer.values())):
            comparisons = [c for e in tested for group in families(e) for c in group if c.verdict != "untestable"]
            lines = depth_findings.cannot_show_lines(tested, "family", families, 0.95)
            if any(c.verdict == "different" for c in comparisons):
                assert not lines  # something was detected: the family could show an effect
            for text in lines:  # the smallest reachable p is the largest n's
                assert f"Family, {max(c.n_units for c in comparisons)} seed" in text
                assert stats.alpha_of(0.95) < float(re.search(r"possible (?:adjusted )?p is ([\d.e-]+)", text).group(1))
