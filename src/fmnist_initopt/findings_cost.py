"""findings.md's Cost section: the isolated per-step cost, its placebo check, and compute to the target.

Efficiency is work to the target (median epochs to target × steps per epoch) × the per-step cost measured in
isolation; the runs' own wall and CPU times, taken while they shared the machine, are described and never ranked.
"""

from __future__ import annotations

import math

import pandas as pd

from fmnist_initopt.aggregate import combination_label, median_epochs_to_target
from fmnist_initopt.findings_speed import epochs_to_target_text, seeds_text
from fmnist_initopt.wording import markdown_table, names, number, unique


def placebo_spread(step_costs: pd.DataFrame) -> float | None:
    """Largest relative difference in per-step cost between inits of one optimizer. Init changes only the
    starting weights, never the arithmetic of a step, so any such difference is measurement noise."""
    spreads = [
        (group.max() - group.min()) / group.mean()
        for _, group in step_costs.groupby("optimizer")["median_step_seconds"]
        if len(group) >= 2 and group.mean() > 0
    ]
    return max(spreads) if spreads else None


def cost_section(frame: pd.DataFrame, counts: pd.DataFrame, step_costs: pd.DataFrame | None) -> str:
    parts = ["## Cost"]
    if step_costs is None or step_costs.empty:
        parts.append(
            "**Cost was not measured in isolation** (no per-step cost table), so no cost ranking is given: the runs' "
            "own times depend on what else shared the machine."
        )
    else:
        parts += isolated_cost(frame, counts, step_costs)
    parts.append(run_cost_conditions(frame))
    return "\n\n".join(parts)


def isolated_cost(frame: pd.DataFrame, counts: pd.DataFrame, step_costs: pd.DataFrame) -> list[str]:
    costs = step_costs.dropna(subset=["median_step_seconds"])
    per_optimizer = costs.groupby("optimizer", sort=False)["median_step_seconds"].mean().sort_values()
    machine = ", ".join(map(str, unique(costs["cpu_model"]))) if "cpu_model" in costs else "unknown"
    repeats = ", ".join(map(str, unique(costs["repeats"]))) if "repeats" in costs else "unknown"
    cheapest = per_optimizer.iloc[0] if len(per_optimizer) else math.nan
    relative = (per_optimizer - cheapest) / cheapest if cheapest > 0 else per_optimizer * math.nan
    rows = [
        {
            "optimizer": optimizer,
            "per-step cost (ms, mean over inits)": number(cost * 1000, 3),
            "per init (ms)": ", ".join(
                f"{r.init}: {number(r.median_step_seconds * 1000, 3)}"
                for r in costs[costs["optimizer"] == optimizer].itertuples()
            ),
            "vs cheapest": f"{relative[optimizer]:+.1%}" if math.isfinite(relative[optimizer]) else "n/a",
        }
        for optimizer, cost in per_optimizer.items()
    ]
    placebo, rankable = placebo_text(per_optimizer, relative, placebo_spread(costs))
    compute = compute_rows(frame, counts, per_optimizer)
    parts = [
        f"Per-step cost measured in isolation, interleaved in one process ({repeats} repeats; {machine}). Efficiency "
        "is work to target (median epochs to target × steps per epoch) × that per-step cost, never the wall time of "
        "runs that shared the machine.",
        markdown_table(rows),
        placebo,
        markdown_table([{k: v for k, v in r.items() if k != "_compute"} for r in compute]),
    ]
    return parts + [least_compute_text(compute, rankable)]


def placebo_text(per_optimizer: pd.Series, relative: pd.Series, noise: float | None) -> tuple[str, bool]:
    """The placebo check's sentence, and whether the costs may be ranked (noise below every difference)."""
    largest = float(relative.max()) if len(relative) else 0.0
    if noise is None:
        return (
            "**No placebo**: every optimizer was measured with one init only, so the measurement noise is unknown "
            "and the costs above cannot be ranked.",
            False,
        )
    if len(per_optimizer) < 2:
        return (
            f"Placebo check: init, which cannot change the arithmetic of a step, moved the per-step cost by up to "
            f"{noise:.1%}. Only one optimizer was measured, so there is no cost ranking.",
            False,
        )
    if noise >= largest:
        return (
            f"**Placebo check failed: measurement noise is too large to rank costs.** Init, which cannot change "
            f"the arithmetic of a step, moved the per-step cost by up to {noise:.1%}, at least as much as any "
            f"difference between optimizers ({largest:.1%}).",
            False,
        )
    apart = [o for o in per_optimizer.index[1:] if relative[o] > noise]
    return (
        f"Placebo check: init, which cannot change the arithmetic of a step, moved the per-step cost by at most "
        f"{noise:.1%} (measurement noise); optimizers whose cost differs from the cheapest "
        f"({per_optimizer.index[0]}) by more than that: "
        + (", ".join(f"{o} ({relative[o]:+.1%})" for o in apart) if apart else "none")
        + ".",
        True,
    )


def compute_rows(frame: pd.DataFrame, counts: pd.DataFrame, per_optimizer: pd.Series) -> list[dict]:
    """Per combination: epochs to target, and steps and isolated compute to it from the median epoch; a
    combination that fewer than half its runs brought to the target has no median, so no steps or compute."""
    rows = []
    for row in counts.itertuples(index=False):
        runs = frame[(frame["init"] == row.init) & (frame["optimizer"] == row.optimizer)]
        median = median_epochs_to_target(runs)
        steps = median * float(runs["steps_per_epoch"].iloc[0]) if median is not None else math.nan
        compute = steps * per_optimizer.get(row.optimizer, math.nan)
        rows.append(
            {
                "init + optimizer": combination_label(row.init, row.optimizer),
                "seeds completed / diverged": seeds_text(row),
                "epochs to target": epochs_to_target_text(runs),
                "steps to target (median)": "n/a" if math.isnan(steps) else f"{steps:,.0f}",
                "compute to target (s, isolated)": f"{compute:.3g}" if math.isfinite(compute) else "n/a",
                "_compute": compute,
            }
        )
    return rows


def least_compute_text(rows: list[dict], rankable: bool) -> str:
    finite = [r for r in rows if math.isfinite(r["_compute"])]
    if not finite:
        return "No combination reached the target in at least half its runs, so compute to target is not available."
    if not rankable:
        return ""
    least = min(r["_compute"] for r in finite)
    tied = [r for r in finite if math.isclose(r["_compute"], least, rel_tol=1e-9)]
    return (
        f"Least compute to the target (median epochs × steps × per-step cost): "
        f"{names(r['init + optimizer'] for r in tied)} ({tied[0]['compute to target (s, isolated)']} s). Epochs "
        "to target counts whole epochs, so ties and one-epoch differences are common: the speed section tests them."
    )


def run_cost_conditions(frame: pd.DataFrame) -> str:
    """What the runs recorded about their own cost, and the load they ran under: described, never ranked."""
    recorded = frame["process_cpu_seconds"].notna() if "process_cpu_seconds" in frame else pd.Series(False)
    if not recorded.any():
        return (
            "The runs did not record their own cost (metrics.json without a `cost` block). Wall-clock training "
            "times of runs that may have run side by side measure the scheduler, not the method, so none is ranked."
        )
    runs = frame[recorded]
    loads = pd.concat([runs["load_average_start"], runs["load_average_end"]]).dropna()
    cpus = ", ".join(f"{int(c)}" for c in unique(runs["cpu_count"].dropna()))
    threads = ", ".join(f"{int(t)}" for t in unique(runs["cost_threads"].dropna()))
    load = (
        f"under 1-minute load averages from {loads.min():.2f} to {loads.max():.2f} on {cpus or 'unknown'} CPUs"
        if len(loads)
        else "under an unrecorded load"
    )
    busy = (
        " (more runnable processes than CPUs at times: the runs competed for cores)"
        if len(loads) and runs["cpu_count"].notna().any() and loads.max() > runs["cpu_count"].min()
        else ""
    )
    return (
        f"{recorded.sum()} of {len(frame)} runs recorded their process CPU time (summary table) and ran {load}"
        f"{busy}, with {threads or 'an unknown number of'} thread{'' if threads == '1' else 's'} each. CPU time "
        "and wall time of runs that shared the machine describe the conditions, not the methods: no verdict is "
        "drawn from them."
    )
