"""Aggregation, statistics, figures and findings on hand-made metrics whose truth is known."""

from __future__ import annotations

import math
import re
import struct

import jsonschema
import numpy as np
import pytest
import yaml
from conftest import REPO
from fake_metrics import fake_metrics, write_metrics
from scipy import stats

from fmnist_initopt import figures
from fmnist_initopt.aggregate import combine, confidence_interval, load_metrics, summarize_runs, welch, write_csv
from fmnist_initopt.findings import findings_markdown, init_effects

TARGET, CONFIDENCE = 0.85, 0.95


def known_study() -> list[dict]:
    """3 seeds per combination, built so the answers are known:
    sgd: he beats xavier in test accuracy by ~0.10 with a spread of ~0.002, and reaches the target in epoch 1
         against epoch 3;
    adam: he and xavier overlap (0.880 +- 0.004 each);
    rmsprop: he seed 3 diverges (epoch 2, step 7); xavier never reaches the target."""
    runs = []
    for seed, jitter in zip((1, 2, 3), (-0.002, 0.0, 0.002)):
        runs.append(fake_metrics("he", "sgd", seed, [0.86, 0.89, 0.90 + jitter], epoch_seconds=[10, 11, 12]))
        runs.append(fake_metrics("xavier", "sgd", seed, [0.70, 0.80, 0.86 + jitter], test_accuracy=0.80 + jitter))
        runs.append(fake_metrics("he", "adam", seed, [0.80, 0.86, 0.87], test_accuracy=0.880 + 2 * jitter))
        runs.append(fake_metrics("xavier", "adam", seed, [0.80, 0.86, 0.87], test_accuracy=0.880 - 2 * jitter))
        if seed == 3:
            runs.append(fake_metrics("he", "rmsprop", seed, [0.5], diverged_at=(2, 7), epochs=3, lr=0.001))
        else:
            runs.append(fake_metrics("he", "rmsprop", seed, [0.84, 0.86, 0.87], test_accuracy=0.86 + jitter))
        runs.append(fake_metrics("xavier", "rmsprop", seed, [0.60, 0.70, 0.75 + jitter], test_accuracy=0.75))
    return runs


@pytest.fixture(scope="module")
def tables():
    summary = summarize_runs(known_study(), TARGET)
    return summary, combine(summary, CONFIDENCE)


def row(combinations, init, optimizer):
    return combinations[(combinations["init"] == init) & (combinations["optimizer"] == optimizer)].iloc[0]


def test_fake_metrics_are_schema_valid():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "metrics.schema.yaml").read_text())
    for metrics in known_study():
        jsonschema.validate(metrics, schema)


def test_confidence_interval_matches_a_hand_computation():
    sample = [0.80, 0.85, 0.93]
    n = len(sample)
    mean = sum(sample) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in sample) / (n - 1))
    half_width = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    low, high = confidence_interval(sample, 0.95)
    assert low == pytest.approx(mean - half_width, rel=1e-12)
    assert high == pytest.approx(mean + half_width, rel=1e-12)
    assert all(math.isnan(bound) for bound in confidence_interval([0.8], 0.95))


def test_combination_table_means_and_intervals_follow_the_seeds(tables):
    summary, combinations = tables
    he_sgd = row(combinations, "he", "sgd")
    values = summary[(summary["run_id"].str.startswith("he_sgd"))]["test_accuracy"].to_list()
    assert he_sgd["test_accuracy_mean"] == pytest.approx(np.mean(values))
    assert (he_sgd["test_accuracy_ci_low"], he_sgd["test_accuracy_ci_high"]) == pytest.approx(
        confidence_interval(values, CONFIDENCE)
    )
    assert he_sgd["n_seeds"] == 3 and he_sgd["n_reached_target"] == 3
    # Seconds to target = wall time of the epochs up to and including the first at target (epoch 1: 10 s).
    assert he_sgd["seconds_to_target_mean"] == pytest.approx(10.0)
    assert he_sgd["training_seconds_mean"] == pytest.approx(33.0)


def test_diverged_run_is_counted_reported_and_left_out_of_the_means(tables):
    summary, combinations = tables
    he_rmsprop = row(combinations, "he", "rmsprop")
    diverged = summary[summary["status"] == "diverged"]
    assert diverged["run_id"].to_list() == ["he_rmsprop_seed3"]
    assert (diverged["diverged_epoch"].iloc[0], diverged["diverged_step"].iloc[0]) == (2, 7)
    assert he_rmsprop["n_seeds"] == 3 and he_rmsprop["n_diverged"] == 1 and he_rmsprop["n_completed"] == 2
    assert he_rmsprop["test_accuracy_mean"] == pytest.approx(np.mean([0.858, 0.86]))
    assert he_rmsprop["training_seconds_n"] == 2


def test_a_combination_that_never_reaches_the_target_has_no_epochs_to_target(tables):
    summary, combinations = tables
    xavier_rmsprop = row(combinations, "xavier", "rmsprop")
    assert xavier_rmsprop["n_reached_target"] == 0
    assert math.isnan(xavier_rmsprop["epochs_to_target_mean"])
    assert summary[summary["run_id"].str.startswith("xavier_rmsprop")]["epochs_to_target"].isna().all()


def test_changing_the_target_changes_epochs_to_target():
    runs = known_study()
    strict = summarize_runs(runs, 0.85).set_index("run_id")["epochs_to_target"]
    loose = summarize_runs(runs, 0.75).set_index("run_id")["epochs_to_target"]
    assert strict["xavier_sgd_seed1"] == 3 and loose["xavier_sgd_seed1"] == 2
    assert math.isnan(strict["xavier_rmsprop_seed1"]) and loose["xavier_rmsprop_seed3"] == 3


def test_welch_difference_matches_scipy_and_is_exact_without_spread():
    a, b = np.array([0.90, 0.91, 0.92]), np.array([0.80, 0.82, 0.81])
    test = welch(a, b, CONFIDENCE)
    assert test["difference"] == pytest.approx(0.10)
    assert test["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert test["ci_low"] < 0.10 < test["ci_high"] and test["ci_low"] > 0
    constant = welch(np.array([1.0, 1.0]), np.array([3.0, 3.0]), CONFIDENCE)
    assert constant["difference"] == -2 and constant["p_value"] == 0


def effect(effects, optimizer, metric):
    found = effects[(effects["optimizer"] == optimizer) & (effects["metric"] == metric)]
    assert len(found) == 1
    return found.iloc[0]


def test_init_effects_separate_a_real_difference_from_noise(tables):
    summary, combinations = tables
    effects = init_effects(summary, combinations, CONFIDENCE)
    sgd_accuracy = effect(effects, "sgd", "final test accuracy")
    assert sgd_accuracy["comparison"] == "he − xavier"
    assert sgd_accuracy["difference"] == "+0.1000" and sgd_accuracy["verdict"] == "he helps"
    assert effect(effects, "sgd", "epochs to target")["verdict"] == "he helps"  # 1 epoch against 3
    assert effect(effects, "adam", "final test accuracy")["verdict"] == "within noise"
    # he reached the target in 2 of 3 seeds, xavier in 0 of 3: Fisher's exact p = 0.4, too few seeds to tell.
    rmsprop_epochs = effect(effects, "rmsprop", "epochs to target")
    assert rmsprop_epochs["verdict"] == "within noise (only he reached the target)"
    assert rmsprop_epochs["p"].startswith(f"{stats.fisher_exact([[2, 1], [0, 3]]).pvalue:.3g} (Fisher")


def test_verdict_sign_flips_when_the_inits_swap_roles():
    swapped = [
        fake_metrics(
            "xavier" if m["run"]["init"] == "he" else "he",
            m["run"]["optimizer"],
            m["run"]["seed"],
            m["history"]["val_accuracy"],
            test_accuracy=m["test"]["accuracy"],
        )
        for m in known_study()
        if m["status"] == "completed"
    ]
    summary = summarize_runs(swapped, TARGET)
    effects = init_effects(summary, combine(summary, CONFIDENCE), CONFIDENCE)
    # The grid order is now xavier first: xavier (trained as he was) minus he.
    sgd_accuracy = effect(effects, "sgd", "final test accuracy")
    assert sgd_accuracy["comparison"] == "xavier − he" and sgd_accuracy["verdict"] == "xavier helps"
    worse = [fake_metrics("he", "sgd", s, [0.7, 0.72, 0.70 + s / 1000]) for s in (1, 2, 3)]
    worse += [m for m in known_study() if not (m["run"]["optimizer"] == "sgd" and m["run"]["init"] == "he")]
    summary = summarize_runs(worse, TARGET)
    effects = init_effects(summary, combine(summary, CONFIDENCE), CONFIDENCE)
    assert effect(effects, "sgd", "final test accuracy")["verdict"] == "he hurts"


# The summary figures, by file stem, with the titles findings.md shows them under.
FIGURE_CAPTIONS = {
    name: name.replace("_", " ").capitalize()
    for name in ("learning_curves", "accuracy_and_time", "epochs_to_target", "init_weights")
}


def render(tmp_path, runs, target=TARGET, draw=True):
    """The workflow's three steps, as the entry scripts run them, into tmp_path/results (figures only if `draw`)."""
    results = tmp_path / "results"
    paths = write_metrics(tmp_path, runs)
    all_metrics = load_metrics(paths)
    summary = summarize_runs(all_metrics, target)
    combinations = combine(summary, CONFIDENCE)
    tables = {"summary.csv": results / "summary.csv", "combinations.csv": results / "combinations.csv"}
    write_csv(summary, tables["summary.csv"])
    write_csv(combinations, tables["combinations.csv"])
    paths = {name: results / "figures" / f"{name}.png" for name in FIGURE_CAPTIONS}
    if draw:
        figures.learning_curves(all_metrics, combinations, target, CONFIDENCE, paths["learning_curves"])
        figures.accuracy_and_time(summary, combinations, CONFIDENCE, paths["accuracy_and_time"])
        figures.epochs_to_target(summary, combinations, target, CONFIDENCE, paths["epochs_to_target"])
        figures.init_weights(all_metrics, paths["init_weights"])
    output = results / "findings.md"
    text = findings_markdown(
        summary,
        combinations,
        all_metrics,
        target,
        CONFIDENCE,
        {FIGURE_CAPTIONS[name]: path for name, path in paths.items()},
        tables,
        output,
    )
    output.write_text(text)
    return text, paths, output


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render(tmp_path_factory.mktemp("known"), known_study())


def test_every_figure_is_a_readable_png_and_findings_link_only_existing_files(rendered):
    text, paths, output = rendered
    for path in paths.values():
        width, height = png_size(path)
        assert 600 <= width <= 4000 and 300 <= height <= 3000, (path.name, width, height)
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert {f"figures/{name}.png" for name in FIGURE_CAPTIONS} <= set(links)
    for link in links:
        assert (output.parent / link).is_file(), link
    assert not list(output.parent.rglob("*.partial"))


def test_findings_state_the_known_answers(rendered):
    text, _, _ = rendered
    assert text.startswith("<!-- Generated")
    best_accuracy = next(line for line in text.splitlines() if line.startswith("- **Final test accuracy**"))
    assert "**he + sgd**" in best_accuracy and "*not distinguishable*" not in best_accuracy
    assert "**he_rmsprop_seed3 diverged**" in text
    assert "`optimizers.rmsprop.kwargs.lr` by 10x, to 0.0001" in text
    assert re.search(r"\*\*xavier \+ rmsprop\*\*: 3 of 3 completed seeds never reached", text)
    assert "never reached (0/3)" in text
    assert "**xavier + rmsprop** performed worse than **he + sgd**" in text
    assert "400 training, 100 validation (holdout), 200 test images" in text
    assert "SGD(lr=0.01, momentum=0.9, weight_decay=0)" in text


def test_overlapping_best_and_runner_up_are_marked_not_distinguishable(tmp_path):
    runs = [
        fake_metrics(init, "adam", seed, [0.9], test_accuracy=0.88 + sign * jitter)
        for init, sign in (("he", 1), ("xavier", -1))
        for seed, jitter in zip((1, 2, 3), (-0.004, 0.0, 0.005))
    ]
    text, _, _ = render(tmp_path, runs, draw=False)
    best_accuracy = next(line for line in text.splitlines() if line.startswith("- **Final test accuracy**"))
    assert "*not distinguishable*" in best_accuracy


def test_one_seed_says_no_uncertainty_instead_of_intervals(tmp_path):
    runs = [m for m in known_study() if m["run"]["seed"] == 1]
    text, paths, _ = render(tmp_path, runs)
    assert "no uncertainty can be estimated" in text
    assert "CI]" not in text and "Welch p" not in text
    assert "not testable" in text
    assert all(png_size(path) for path in paths.values())


def test_styles_are_stable_distinct_and_extend_to_new_names():
    grid = figures.Styles(["he", "xavier"], ["sgd", "adam", "rmsprop"])
    wider = figures.Styles(["he", "xavier", "orthogonal"], ["sgd", "adam", "rmsprop", "adamw"])
    assert len({tuple(c) for c in grid.colour.values()}) == 3
    assert len({str(s["linestyle"]) for s in grid.init.values()}) == 2
    assert len({tuple(c) for c in wider.colour.values()}) == 4
    assert len({str(s["linestyle"]) for s in wider.init.values()}) == 3
    for name in ("sgd", "adam", "rmsprop"):
        assert wider.colour[name] == grid.colour[name]
    for name in ("he", "xavier"):
        assert wider.init[name] == grid.init[name]


def test_only_one_init_reaching_the_target_is_a_difference_when_enough_seeds_say_so():
    runs = [fake_metrics("he", "sgd", seed, [0.80, 0.86 + seed / 1000]) for seed in range(1, 5)]
    runs += [fake_metrics("xavier", "sgd", seed, [0.70, 0.76 + seed / 1000]) for seed in range(1, 5)]
    summary = summarize_runs(runs, TARGET)
    epochs = effect(init_effects(summary, combine(summary, CONFIDENCE), CONFIDENCE), "sgd", "epochs to target")
    assert stats.fisher_exact([[4, 0], [0, 4]]).pvalue < 1 - CONFIDENCE
    assert epochs["verdict"] == "he helps (only he reached the target)"
    assert epochs["seeds reaching target"] == "he: 4/4, xavier: 0/4"
