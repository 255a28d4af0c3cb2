"""Aggregation, figures and findings on hand-made metrics whose truth is known."""

from __future__ import annotations

import ast
import math
import re
import struct

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from fake_metrics import ANSWER_QUESTIONS as QUESTIONS
from fake_metrics import fake_metrics, write_metrics
from scipy import stats as scipy_stats

from fmnist_initopt import figures, study
from fmnist_initopt.aggregate import combine, load_metrics, summarize_runs, write_csv
from fmnist_initopt.findings import findings_markdown
from fmnist_initopt.stats import mean_interval

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


def generated_study(xavier_effect: float, seeds: int = 6, noise: float = 0.002, rng_seed: int = 7) -> list[dict]:
    """2 inits x 3 optimizers x `seeds`, 4 epochs; xavier's test accuracy is `xavier_effect` higher than he's
    in every optimizer, under a shared per-seed shift (same data order) and independent run noise."""
    rng = np.random.default_rng(rng_seed)
    runs = []
    for seed in range(1, seeds + 1):
        shift = rng.normal(0, 0.003)
        for optimizer, base in (("sgd", 0.905), ("adam", 0.91), ("rmsprop", 0.903)):
            for init in ("he", "xavier"):
                final = base + xavier_effect * (init == "xavier") + shift + rng.normal(0, noise)
                curve = [0.84 + rng.normal(0, 0.003), 0.87, 0.89, final + 0.002]
                runs.append(fake_metrics(init, optimizer, seed, curve, test_accuracy=final))
    return runs


@pytest.fixture(scope="module")
def tables():
    summary = summarize_runs(known_study(), TARGET)
    return summary, combine(summary, CONFIDENCE)


def row(combinations, init, optimizer):
    return combinations[(combinations["init"] == init) & (combinations["optimizer"] == optimizer)].iloc[0]


def findings(runs, target=TARGET, step_costs=None, tmp_path=None) -> str:
    return findings_markdown(
        summarize_runs(runs, target), runs, target, CONFIDENCE, {}, {}, "results/findings.md", step_costs=step_costs
    )


def section(text: str, heading: str) -> str:
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def opening(text: str) -> list[str]:
    """The answer at a glance: the bullet lines between "## Answer" and its evidence."""
    block = section(text, "Answer").split("### Evidence", 1)[0]
    return [line[2:] for line in block.splitlines() if line.startswith("- ")]


def line(text: str, question: str) -> str:
    return next(item for item in opening(text) if item.startswith(question))


def evidence(text: str, question: str) -> str:
    """The evidence paragraph under the five lines that starts with `question`."""
    block = section(text, "Answer").split("### Evidence", 1)[1]
    return next(paragraph for paragraph in block.split("\n\n") if paragraph.startswith(question))


# ---------------------------------------------------------------------------------------------- aggregate


def test_fake_metrics_are_schema_valid():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "metrics.schema.yaml").read_text())
    for metrics in known_study():
        jsonschema.validate(metrics, schema)


def test_mean_interval_matches_a_hand_computation():
    sample = [0.80, 0.85, 0.93]
    n = len(sample)
    mean = sum(sample) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in sample) / (n - 1))
    half_width = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    low, high = mean_interval(sample, 0.95)
    assert low == pytest.approx(mean - half_width, rel=1e-12)
    assert high == pytest.approx(mean + half_width, rel=1e-12)
    assert all(math.isnan(bound) for bound in mean_interval([0.8, math.nan], 0.95))
    assert mean_interval([0.9, 0.9, 0.9], 0.95) == (0.9, 0.9)


def test_combination_table_means_and_intervals_follow_the_seeds(tables):
    summary, combinations = tables
    he_sgd = row(combinations, "he", "sgd")
    values = summary[(summary["run_id"].str.startswith("he_sgd"))]["test_accuracy"].to_list()
    assert he_sgd["test_accuracy_mean"] == pytest.approx(np.mean(values))
    assert (he_sgd["test_accuracy_ci_low"], he_sgd["test_accuracy_ci_high"]) == pytest.approx(
        mean_interval(values, CONFIDENCE)
    )
    assert he_sgd["n_seeds"] == 3 and he_sgd["n_reached_target"] == 3
    # Seconds to target = wall time of the epochs up to and including the first at target (epoch 1: 10 s).
    assert he_sgd["seconds_to_target_mean"] == pytest.approx(10.0)
    assert he_sgd["training_seconds_mean"] == pytest.approx(33.0)


def test_speed_measures_per_run(tables):
    summary, combinations = tables
    runs = summary.set_index("run_id")
    xavier_sgd = runs.loc["xavier_sgd_seed2"]
    assert xavier_sgd["mean_val_accuracy"] == pytest.approx(np.mean([0.70, 0.80, 0.86]))
    assert xavier_sgd["epoch1_val_accuracy"] == pytest.approx(0.70)
    assert xavier_sgd["epochs_to_target"] == 3 and xavier_sgd["epochs_to_target_censored"] == 3
    # 400 training images in batches of 64: 7 steps per epoch, so 3 epochs are 21 steps of work.
    assert xavier_sgd["steps_per_epoch"] == 7 and xavier_sgd["steps_to_target"] == 21
    # Never reached: no epochs to target, but counted as epochs + 1 for the comparisons.
    never = runs.loc["xavier_rmsprop_seed1"]
    assert math.isnan(never["epochs_to_target"]) and never["epochs_to_target_censored"] == 4
    # A diverged run's partial curve has no mean over the epochs; its epoch-1 accuracy is still what it was.
    diverged = runs.loc["he_rmsprop_seed3"]
    assert math.isnan(diverged["mean_val_accuracy"]) and diverged["epoch1_val_accuracy"] == pytest.approx(0.5)
    assert row(combinations, "xavier", "sgd")["mean_val_accuracy_mean"] == pytest.approx(np.mean([0.70, 0.80, 0.86]))


def test_cost_block_is_copied_and_its_absence_is_nan():
    with_cost = fake_metrics("he", "adam", 1, [0.9], cost={"process_cpu_seconds": 42.0, "load_average_end": 3.5})
    without = fake_metrics("he", "adam", 2, [0.9])
    del without["cost"]
    summary = summarize_runs([with_cost, without], TARGET).set_index("run_id")
    assert summary.at["he_adam_seed1", "process_cpu_seconds"] == 42.0
    assert summary.at["he_adam_seed1", "load_average_end"] == 3.5 and summary.at["he_adam_seed1", "cpu_count"] == 2
    assert summary.loc["he_adam_seed2", ["process_cpu_seconds", "median_step_seconds", "cost_threads"]].isna().all()


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


# ---------------------------------------------------------------------------------------------- the answer


def test_the_answer_opens_with_five_short_lines_one_per_question():
    text = findings(generated_study(xavier_effect=0.01))
    lines = opening(text)
    assert [item.split("**", 2)[1] for item in lines] == [q.strip("*") for q in QUESTIONS]
    assert all(len(item) <= 160 and re.search(r"\d", item) for item in lines), lines  # short, each with its number


def test_a_real_one_point_xavier_effect_is_found_with_the_right_sign():
    text = findings(generated_study(xavier_effect=0.01))
    assert line(text, "**Which init?**").startswith("**Which init?** **xavier** is better than he (by ")
    init = evidence(text, "**Which init?**")
    assert "**xavier** had the highest mean final test accuracy and is better than **he**" in init
    estimate = float(re.search(r"he − xavier: ([-+]\d+\.\d+) pp", init).group(1))
    assert -1.3 < estimate < -0.7  # the +1 pp effect, from he's side
    # 6 seeds, the unit: the smallest p of the exact sign-flip test is 2/64
    assert ": different" in init and "p = 0.031" in init and "xavier ahead in 6 of 6 seeds" in init
    assert "No dependence detected" in line(text, "**Does it depend on the optimizer?**")
    factorial = section(text, "Answer").split("repeated-measures ANOVA with the seed as subject: each", 1)[1]
    assert re.search(r"\| init +\| 1 +\| 5 +\| [\d.]+ +\| < 0.001 +\|", factorial)
    assert re.search(r"\| init:optimizer +\| 2 +\| 10 +\|", factorial)


def test_no_init_effect_is_not_claimed_and_the_mde_says_what_could_have_been_seen():
    text = findings(generated_study(xavier_effect=0.0))
    init = evidence(text, "**Which init?**")
    assert "is better than" not in init and "no difference between **" in init and "not detected (MDE" in init
    assert line(text, "**Which init?**").startswith("**Which init?** No difference detected")
    sensitivity = evidence(text, "**How small an init effect could this study see?**")
    mde = float(re.search(r"minimum detectable init effect \(MDE\) is (\d+\.\d+) pp", sensitivity).group(1))
    assert 0.05 < mde < 1.0
    assert "80% power" in sensitivity and "the unit being the seed (6 seeds" in sensitivity
    assert "simulated power of the exact sign-flip test" in sensitivity  # the test used, not a t approximation
    assert re.search(
        r"(\d+) seeds \(now 6\) would bring it to 0.3 pp or less|already reach an MDE of 0.3 pp", sensitivity
    )
    assert f"An init effect of {mde:.2f} pp or more (80% power, 6 seeds)" in line(text, "**What could it detect?**")


def test_swapping_the_inits_swaps_the_answer():
    swapped = generated_study(xavier_effect=0.01)
    for run in swapped:
        init = "he" if run["run"]["init"] == "xavier" else "xavier"
        run["run"].update(init=init, id=run["run"]["id"].replace(run["run"]["init"], init, 1))
    init = evidence(findings(swapped), "**Which init?**")
    assert "**he** had the highest mean final test accuracy and is better than **xavier**" in init


def test_three_seeds_cannot_detect_anything_and_say_why(tables):
    text = findings(known_study())
    per_optimizer = section(text, "Initialisation × optimizer")
    assert re.search(r"\| sgd +\| xavier − he +\| -10\.00 pp .*not detected", per_optimizer)
    assert "3 seeds cannot reach p <= 0.05: the smallest possible p is 0.25" in per_optimizer
    assert "No init effect, however large" in line(text, "**What could it detect?**")


def test_a_combination_that_lost_seeds_cannot_be_best():
    runs = generated_study(xavier_effect=0.0, seeds=3)
    # xavier + adam would be best on its two surviving seeds...
    for run in runs:
        if run["run"]["init"] == "xavier" and run["run"]["optimizer"] == "adam":
            run["history"]["val_accuracy"][-1] = run["test"]["accuracy"] = 0.99
    runs = [r for r in runs if r["run"]["id"] != "xavier_adam_seed3"]
    runs.append(fake_metrics("xavier", "adam", 3, [0.5], diverged_at=(2, 3), epochs=4))
    text = findings(runs)
    ranking = section(text, "Best combinations")
    assert re.search(
        r"\| – +\| xavier \+ adam +\| 0\.99\d\d .*\| 2 / 1 +\| not eligible: 1 of 3 seeds diverged", ranking
    )
    best = evidence(text, "**Best combinations**")
    assert "xavier + adam" not in best.split("Not eligible")[0]
    assert "xavier + adam" not in line(text, "**Best set:**")
    assert "Not eligible, because seeds diverged: xavier + adam (1 of 3 seeds lost)" in section(text, "Answer")


def test_best_is_selected_on_validation_and_reported_on_test():
    runs = [
        fake_metrics(init, "adam", seed, [0.8, 0.9 + bonus], test_accuracy=0.85 - bonus)
        for init, bonus in (("he", 0.05), ("xavier", 0.0))
        for seed in range(1, 7)
    ]
    text = findings(runs)
    ranking = section(text, "Best combinations")
    first = next(line for line in ranking.splitlines() if line.startswith("| 1 "))
    assert "he + adam" in first and "0.8000" in first  # he wins on validation and is reported at its test accuracy
    assert re.search(r"\| 2 +\| xavier \+ adam .*: different +\| no +\|", ranking)


# ---------------------------------------------------------------------------------------------- speed


def test_speed_measures_separate_inits_when_epochs_to_target_ties():
    runs = []
    for seed in range(1, 7):
        runs.append(fake_metrics("he", "sgd", seed, [0.86 + seed / 1000, 0.90, 0.91]))
        runs.append(fake_metrics("xavier", "sgd", seed, [0.85 + seed / 1000, 0.88, 0.91]))
    text = findings(runs)
    speed = section(text, "Convergence speed")
    assert (
        "**Warning: the target does not discriminate: 12 of 12 runs reached validation accuracy 0.85 in epoch 1**"
        in speed
    )
    assert "raise `report.target_accuracy`, e.g. to about 0.89" in speed
    assert re.search(
        r"\| mean validation accuracy over epochs +\| sgd +\| xavier − he +\| -1\.00 pp .*: different", speed
    )
    assert re.search(r"\| epoch-1 validation accuracy +\| sgd +\| xavier − he +\| -1\.00 pp .*: different", speed)
    assert re.search(r"\| epochs to target \(never = epochs \+ 1\) +\| sgd +\| \w+ − \w+ +\| \+0\.00 epochs", speed)


def test_never_reaching_the_target_counts_as_censored_and_is_tested():
    runs = [fake_metrics("he", "sgd", seed, [0.80, 0.86 + seed / 1000]) for seed in range(1, 7)]
    runs += [fake_metrics("xavier", "sgd", seed, [0.70, 0.76 + seed / 1000]) for seed in range(1, 7)]
    text = findings(runs)
    speed = section(text, "Convergence speed")
    # he: 2 epochs in every seed; xavier: never within 2 epochs = 3. Six identical pairs: p = 2/64, not 0.
    assert re.search(
        r"\| epochs to target \(never = epochs \+ 1\) +\| sgd +\| xavier − he +\| \+1\.00 epochs .*p = 0\.031", speed
    )
    summary_table = section(text, "Summary")
    assert re.search(r"\| he \+ sgd .*\| median 2 \(reached 6/6\) +\|", summary_table)
    assert re.search(r"\| xavier \+ sgd .*\| never reached \(0/6\) +\|", summary_table)
    assert "1 of 12" not in speed and "Warning" not in speed


def test_no_run_reaching_the_target_is_a_warning_with_the_fix():
    text = findings(known_study(), target=0.99)
    assert "**Warning: the target does not discriminate: no run reached validation accuracy 0.99**" in text
    assert "Lower `report.target_accuracy`" in text


# ---------------------------------------------------------------------------------------------- cost


def step_costs(placebo: float) -> pd.DataFrame:
    """Isolated per-step cost: sgd 2.0 ms, adam 2.6 ms, rmsprop 2.4 ms; xavier off by `placebo` (relative)."""
    return pd.DataFrame(
        [
            {
                "init": init,
                "optimizer": optimizer,
                "median_step_seconds": ms / 1000 * (1 + placebo * (init == "xavier")),
                "repeats": 7,
                "cpu_model": "Test CPU",
            }
            for optimizer, ms in (("sgd", 2.0), ("adam", 2.6), ("rmsprop", 2.4))
            for init in ("he", "xavier")
        ]
    )


def test_cost_is_ranked_only_from_an_isolated_measurement_that_passes_the_placebo():
    runs = known_study()
    unmeasured = section(findings(runs), "Cost")
    assert "**Cost was not measured in isolation**" in unmeasured and "Least compute" not in unmeasured
    assert "no verdict is drawn from them" in unmeasured  # the runs' own CPU time and load are described only

    clean = section(findings(runs, step_costs=step_costs(0.01)), "Cost")
    assert "init, which cannot change the arithmetic of a step, moved the per-step cost by at most 1.0%" in clean
    assert "rmsprop (+20.0%), adam (+30.0%)" in clean
    # he + sgd reaches the target in epoch 1: 7 steps x 2.01 ms (sgd, mean over inits), the least compute of all.
    assert "Least compute to the target (median epochs × steps × per-step cost): **he + sgd** (0.0141 s)" in clean

    noisy = section(findings(runs, step_costs=step_costs(0.5)), "Cost")
    assert "**Placebo check failed: measurement noise is too large to rank costs.**" in noisy
    assert "Least compute" not in noisy


def test_wall_time_is_never_ranked(tables):
    text = findings(known_study())
    assert "training time" not in section(text, "Answer").lower()
    assert "Least compute" not in text and "fastest training" not in text.lower()


# ---------------------------------------------------------------------------------------------- rendering

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
    assert text.index("## Answer") < text.index("## Best combinations") < text.index("## Summary")
    assert "**he_rmsprop_seed3 diverged** (loss not finite at epoch 2, step 7" in text
    assert "`optimizers.rmsprop.kwargs.lr` by 10x, to 0.0001" in text
    assert re.search(r"\*\*xavier \+ rmsprop\*\*: 3 of 3 completed seeds never reached", text)
    assert "never reached (0/3)" in text
    # he + rmsprop lost a seed: listed, not eligible to be best.
    assert "Not eligible, because seeds diverged: he + rmsprop (1 of 3 seeds lost)" in text
    assert "400 training, 100 validation (holdout), 200 test images" in text
    assert "SGD(lr=0.01, momentum=0.9, weight_decay=0, maximize=false, foreach=null)" in text
    assert "Every comparison uses one rule at alpha = 0.05" in text  # stats.decision_rule_text, quoted
    assert "Welch" not in text and "within noise" not in text


def test_one_seed_says_no_uncertainty_instead_of_intervals(tmp_path):
    runs = [m for m in known_study() if m["run"]["seed"] == 1]
    text, paths, _ = render(tmp_path, runs)
    assert "no uncertainty can be estimated" in text
    answer = section(text, "Answer")
    assert "**Which init?** Untestable: only one seed has a test accuracy for every init" in answer
    assert "**Which optimizers differ?** Untestable: only one seed has a test accuracy for every optimizer" in answer
    assert "no gap could be excluded with 1 seed" in line(text, "**Best set:**")
    summary_table = section(text, "Summary")
    assert not re.search(r"\d \[\d", summary_table)  # no interval without a second seed
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


# ---------------------------------------------------------------------------------------------- the workflow's inputs


def imported_modules(path, seen: set | None = None) -> set[str]:
    """The package modules a source file (a package module's name, or a path) imports, directly or through
    others: its import statements, also those inside functions."""
    seen = set() if seen is None else seen
    source = REPO / "src" / "fmnist_initopt" / f"{path}.py" if isinstance(path, str) else path
    if isinstance(path, str):
        if path in seen:
            return seen
        seen.add(path)
    for node in ast.walk(ast.parse(source.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fmnist_initopt"):
            names = [a.name for a in node.names] if node.module == "fmnist_initopt" else [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("fmnist_initopt.")]
        for name in names:
            if (REPO / "src" / "fmnist_initopt" / f"{name}.py").exists():
                imported_modules(name, seen)
    return seen


def rule_block(smk: str, rule: str) -> str:
    return (REPO / "workflow" / "rules" / smk).read_text().split(f"rule {rule}:", 1)[1].split("\nrule ", 1)[0]


def statistics_code() -> set[str]:
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    return set(re.findall(r'"(\w+)"', common.split("STATISTICS_CODE = (", 1)[1].split(")", 1)[0]))


def rule_code_inputs(smk: str, rule: str) -> set[str]:
    """The modules a rule's package_code(...) names, STATISTICS_CODE and the training modules expanded."""
    block = rule_block(smk, rule).split("code=package_code(", 1)[1].split(")", 1)[0]
    named = set(re.findall(r'"(\w+)"', block))
    named |= statistics_code() if "*STATISTICS_CODE" in block else set()
    return named | (set(study.TRAINING_MODULES) if "*study.TRAINING_MODULES" in block else set())


# Modules that shape no output: the atomic writer, the log set-up, the progress lines (the study's time
# left), and config.py with the PyTorch check it imports (they only refuse what does not fit).
SHAPES_NOTHING = {"atomic", "logs", "progress", "config", "pytorch_check"}

CODE_INPUT_RULES = [
    ("cost.smk", "step_cost"),
    ("export.smk", "export_mlflow"),
    ("report.smk", "aggregate"),
    ("report.smk", "figures"),
    ("report.smk", "findings"),
    ("report.smk", "findings_html"),
    ("diagnostics.smk", "signal_report"),
    ("diagnostics.smk", "lr_sweep_report"),
    ("depth.smk", "depth_report"),
    ("compare.smk", "compare"),
]


@pytest.mark.parametrize(("smk", "rule"), CODE_INPUT_RULES)
def test_a_rule_names_every_module_its_outputs_are_computed_with(smk, rule):
    # editing any of them must rerun the rule
    script = re.search(r'script:\s*"\.\./scripts/(\w+\.py)"', rule_block(smk, rule)).group(1)
    needed = imported_modules(REPO / "workflow" / "scripts" / script) - SHAPES_NOTHING
    assert needed <= rule_code_inputs(smk, rule), needed - rule_code_inputs(smk, rule)


def test_the_training_code_is_every_module_a_train_job_computes_with():
    # editing any other module (e.g. progress.py) must retrain nothing
    needed = imported_modules(REPO / "workflow" / "scripts" / "train.py") - SHAPES_NOTHING
    assert needed == set(study.TRAINING_MODULES)


def test_statistics_code_lists_the_whole_statistics_layer():
    layer = set().union(*(imported_modules(name) for name in ("stats", "levels", "best", "anova", "power")))
    assert statistics_code() == layer
