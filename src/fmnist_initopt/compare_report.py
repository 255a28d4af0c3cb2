"""compare.md and its figure: study B against study A, from a compare.StudyComparison.

The page opens with the headline (what differs, then each measure's pooled verdict), shows the figure, lists
what differs and what is the same, gives one table per measure (per combination and pooled, B - A with the
interval of its test, p, Holm-adjusted p, verdict and minimum detectable effect), the runs present in one study
only and the pairs left out, and ends with the method. Every number is formatted through wording.py.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from pathlib import Path

import numpy as np

from fmnist_initopt import wording
from fmnist_initopt.aggregate import combination_label
from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.compare import Fact, MeasureResult, Row, StudyComparison
from fmnist_initopt.figures import plt, save
from fmnist_initopt.stats import decision_rule_text

FIGURE_TITLE = "B - A per combination and pooled"
SHOWN_VALUES = 3  # distinct values listed per setting before "+N more"
HEADLINE_FACTS = 6  # differing settings named in the headline


def _short(value: str) -> str:
    """A SHA-256 as its first 12 hex digits; anything else as it is."""
    return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1…", value)


def _values(values) -> str:
    shown = [f"`{_short(value)}`" for value in values[:SHOWN_VALUES]]
    more = len(values) - SHOWN_VALUES
    return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def scope_label(scope: dict) -> str:
    if not scope:
        return "**pooled**"
    label = combination_label(scope["init"], scope["optimizer"])
    return f"{label}, depth {scope['depth']}" if scope.get("depth") else label


def _amount(value: float, row_measure, sign: bool = False) -> str:
    m = row_measure
    if not wording.finite(value):
        return wording.NOT_AVAILABLE
    shown = (wording.signed if sign else wording.number)(value * m.scale, m.digits)
    return f"{shown} {m.unit}"


def _mean(value: float, measure) -> str:
    if measure.unit == "pp":  # an accuracy: shown as a percentage, its differences in percentage points
        return wording.percent(value, measure.digits)
    return _amount(value, measure)


def _interval(comparison, measure) -> str:
    low, high = comparison.ci_low, comparison.ci_high
    if not (wording.finite(low) and wording.finite(high)):
        return "[no bound]" if comparison.p is not None else ""
    return f"[{wording.signed(low * measure.scale, measure.digits)}, {wording.signed(high * measure.scale, measure.digits)}]"


def _mde(row: Row, measure) -> str:
    mde = row.mde
    if mde.value is None:
        return f"none: {mde.reason}" if mde.reason else wording.NOT_AVAILABLE
    return f"{_amount(mde.value, measure)} ({mde.power:.0%} power, α {mde.alpha:.3g}, {wording.count(mde.n_units, mde.unit)})"


def _verdict(comparison) -> str:
    text = f"**{comparison.verdict}**" if comparison.verdict == "different" else comparison.verdict
    return f"{text}: {comparison.reason}" if comparison.reason else text


def _ratio(row: Row) -> str:
    if not (wording.finite(row.mean_a) and wording.finite(row.mean_b)) or row.mean_a == 0:
        return wording.NOT_AVAILABLE
    return f"{row.mean_b / row.mean_a:.2f}x"


def measure_table(result: MeasureResult, a: str, b: str) -> str:
    """One row per combination, then the pooled row."""
    measure, rows = result.measure, []
    for row in (*result.per_combination, result.pooled):
        c = row.comparison
        cells = {
            "combination": scope_label(row.scope),
            "seeds": str(c.n_units),
            a: _mean(row.mean_a, measure),
            b: _mean(row.mean_b, measure),
            f"{b} - {a}": f"{_amount(c.estimate, measure, sign=True)} {_interval(c, measure)}".strip(),
            "p": wording.p_text(c.p, c.alpha),
            "p (Holm)": wording.p_text(c.p_adjusted, c.alpha),
            "verdict": _verdict(c),
            "detectable (MDE)": _mde(row, measure),
        }
        if measure.unit != "pp":
            cells[f"{b} / {a}"] = _ratio(row)
        rows.append(cells)
    return wording.markdown_table(rows)


def _fact_change(fact: Fact) -> str:
    return f"{fact.name} ({_values(fact.a_values)} → {_values(fact.b_values)})"


def headline_differences(result: StudyComparison) -> str:
    differing = result.differing
    if not differing:
        return (
            "nothing: every pair has the same spec and was computed alike (same precision, device, PyTorch, code, data)"
        )
    named = "; ".join(_fact_change(fact) for fact in differing[:HEADLINE_FACTS])
    more = len(differing) - HEADLINE_FACTS
    return named + (f"; and {more} more settings (below)" if more > 0 else "")


def headline_measure(result: MeasureResult, a: str, b: str) -> str:
    measure, pooled = result.measure, result.pooled
    c = pooled.comparison
    different = sum(row.comparison.verdict == "different" for row in result.per_combination)
    testable = sum(row.comparison.verdict != "untestable" for row in result.per_combination)
    if c.verdict == "untestable":
        text = f"pooled {b} - {a} untestable: {c.reason}"
    else:
        # not detected: why no difference could have been (too few seeds), else the smallest one that could
        mde = (c.reason or f"detectable: {_mde(pooled, measure)}") if c.verdict == "not detected" else ""
        mde = f"; {mde}" if mde else ""
        text = (
            f"pooled {b} - {a} {_amount(c.estimate, measure, sign=True)} {_interval(c, measure)} over "
            f"{wording.count(c.n_units, 'seed')}, {wording.p_is(c.p, c.alpha)}: **{c.verdict}**{mde}"
        )
    if measure.unit != "pp":
        text += f" ({b} / {a}: {_ratio(pooled)})"
    unreachable = [row.mde for row in result.per_combination if not row.mde.reachable]
    if testable and len(unreachable) == testable:
        seeds = "/".join(map(str, sorted({mde.n_units for mde in unreachable})))
        level = unreachable[0].alpha
        return f"{text}; per combination none is detectable: {seeds} seeds cannot reach p <= {level:.3g} (Holm's first step)"
    return f"{text}; per combination {different} of {testable} testable different (Holm)"


def headline(result: StudyComparison) -> list[str]:
    a, b = result.a.label, result.b.label
    lines = [f"- **What differs**: {headline_differences(result)}."]
    lines += [f"- **{wording.sentence_case(m.measure.title)}**: {headline_measure(m, a, b)}." for m in result.measures]
    left_out = (
        f"{wording.count(len(result.only_a), 'run')} only in {a}, {len(result.only_b)} only in {b}; "
        f"{wording.count(len(result.incomplete), 'pair')} with a run that did not complete"
    )
    return [*lines, f"- **Left out**: {left_out}."]


def settings_tables(result: StudyComparison) -> list[str]:
    a, b = result.a.label, result.b.label
    differing = [
        {"setting": f.name, a: _values(f.a_values), b: _values(f.b_values), "pairs that differ": str(f.pairs_differing)}
        for f in result.differing
    ]
    same = [
        {
            "setting": f.name,
            "value": _values(f.a_values) if len(f.a_values) == 1 else "varies by run, equal in each pair",
        }
        for f in result.facts
        if not f.pairs_differing
    ]
    lines = ["## What differs between the two studies", ""]
    lines += [wording.markdown_table(differing)] if differing else ["Nothing: every pair agrees in every setting."]
    lines += ["", "## What is the same in every pair", "", wording.markdown_table(same) if same else "Nothing.", ""]
    return lines


def load_line(result: StudyComparison) -> str:
    """The load each study trained under: wall times compare only when it was alike."""

    def median_load(study) -> str:
        loads = [
            (cost["load_average_start"] + cost["load_average_end"]) / 2
            for cost in (metrics.get("cost") or {} for metrics in study.runs.values())
            if wording.finite(cost.get("load_average_start")) and wording.finite(cost.get("load_average_end"))
        ]
        return f"{statistics.median(loads):.2f}" if loads else wording.NOT_AVAILABLE

    a, b = result.a, result.b
    return (
        f"Load average while training (median over runs of its mean at start and end): {a.label} {median_load(a)}, "
        f"{b.label} {median_load(b)}; wall times compare only under a similar load."
    )


def left_out_lines(result: StudyComparison) -> list[str]:
    a, b = result.a.label, result.b.label
    lines = ["## Runs in one study only", ""]
    if result.only_a or result.only_b:
        rows = [
            {"study": label, "runs": ", ".join(ids)} for label, ids in ((a, result.only_a), (b, result.only_b)) if ids
        ]
        lines.append(wording.markdown_table(rows))
    else:
        lines.append("None: every run has its partner.")
    lines += ["", "## Pairs left out (a run that did not complete)", ""]
    if result.incomplete:
        rows = [{"run": run, f"status in {a}": sa, f"status in {b}": sb} for run, sa, sb in result.incomplete]
        lines.append(wording.markdown_table(rows))
    else:
        lines.append("None: both runs of every pair completed.")
    return [*lines, ""]


def method_text(result: StudyComparison) -> str:
    a, b = result.a.label, result.b.label
    return (
        f"Every run of {b} is paired with the run of {a} that has the same init, optimizer, depth and seed; a pair "
        "enters the tests only when both runs completed. A seed fixes the initial weights and the data order in both "
        "studies, so each pair differs only by what differs between them (above). Per combination, "
        f"{b} - {a} is tested over the seeds, the combinations of one measure forming one Holm family; pooled, each "
        "seed's differences are first averaged over the combinations it completed in both studies, then tested over "
        "the seeds (a family of one per measure). The detectable effect (MDE) is that of the same exact sign-flip "
        "test with the power shown, from the observed seed-to-seed spread of the differences, at the level of the "
        "family's first Holm step. Times are wall clock and comparable only when both studies ran under similar "
        f"load; the process CPU time counts the work done. {decision_rule_text(result.confidence)}"
    )


def compare_markdown(result: StudyComparison, figure: str | None = None, notes=()) -> str:
    """The whole page; `figure` is its file name relative to the page, `notes` extra lines under the title."""
    a, b = result.a.label, result.b.label
    seeds = {key[-1] for key in result.paired}
    lines = [
        f"# {b} against {a}: did the answer change?",
        "",
        *notes,
        f"{b} - {a}, run by run: {wording.count(len(result.paired), 'pair')} of runs with the same init, optimizer, "
        f"depth and seed ({wording.count(len(seeds), 'seed')}), from `{result.a.directory}` (A, the reference) and "
        f"`{result.b.directory}` (B).",
        "",
        *headline(result),
        "",
    ]
    if figure:
        lines += [f"![{FIGURE_TITLE}]({figure})", ""]
    lines += settings_tables(result)
    for measure_result in result.measures:
        m = measure_result.measure
        lines += [
            f"## {wording.sentence_case(m.title)}: {b} - {a} ({m.unit})",
            "",
            measure_table(measure_result, a, b),
            "",
        ]
        if m.column == "training_seconds":
            lines += [load_line(result), ""]
    lines += left_out_lines(result)
    return "\n".join([*lines, "## Method", "", method_text(result), ""])


def compare_figure(result: StudyComparison, path: str | Path) -> None:
    """One panel per measure: B - A per combination and pooled, with the interval of its test; filled markers
    are differences called different, open ones not detected (no marker: untestable)."""
    a, b = result.a.label, result.b.label
    labels = [
        scope_label(row.scope).strip("*") for row in (*result.measures[0].per_combination, result.measures[0].pooled)
    ]
    figure, axes = plt.subplots(1, len(result.measures), figsize=(3.6 * len(result.measures), 1.2 + 0.35 * len(labels)))
    for axis, measure_result in zip(np.atleast_1d(axes), result.measures):
        m = measure_result.measure
        for y, row in enumerate((*measure_result.per_combination, measure_result.pooled)):
            c = row.comparison
            if not wording.finite(c.estimate) or c.verdict == "untestable":
                continue
            low, high = (c.ci_low * m.scale, c.ci_high * m.scale)
            if math.isfinite(low) and math.isfinite(high):
                axis.plot([low, high], [y, y], color="tab:blue", linewidth=1.5)
            filled = c.verdict == "different"
            axis.plot(c.estimate * m.scale, y, "o", color="tab:blue", markerfacecolor="tab:blue" if filled else "white")
        axis.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
        axis.set_title(f"{m.title} ({m.unit})", fontsize=9)
        axis.set_yticks(range(len(labels)), labels if axis is np.atleast_1d(axes)[0] else [""] * len(labels))
        axis.set_ylim(len(labels) - 0.5, -0.5)
        axis.axhline(len(labels) - 1.5, color="lightgrey", linewidth=0.8)
    figure.suptitle(
        f"{b} - {a} per combination and pooled (line: interval of the test; filled: different)", fontsize=10
    )
    save(figure, path)


def write_comparison(result: StudyComparison, page: str | Path, figure: str | Path, notes=()) -> tuple[Path, Path]:
    """compare.md and its figure (atomic writes); the page links the figure relative to itself."""
    page, figure = Path(page), Path(figure)
    compare_figure(result, figure)
    link = Path(os.path.relpath(figure.resolve(), page.resolve().parent))
    atomic_write_text(page, compare_markdown(result, link.as_posix(), notes))
    return page, figure
