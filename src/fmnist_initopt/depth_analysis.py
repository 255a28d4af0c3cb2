"""The depth study: does the initialisation decide whether, and how fast, the network trains?

Pure functions of metrics.json dictionaries from runs at several depths (`run.depth`: extra conv layers,
0 = the brief's CNN): the tables and decisions the section (depth_findings.py) writes, and the figure.

* A run's outcome: "diverged" (its loss stopped being finite), "did not train" (it completed but its final
  validation accuracy stayed below DID_NOT_TRAIN_BELOW, i.e. near chance: ten balanced classes give 0.10),
  or "trained". A run stuck at chance is a result, reported like a divergence; its accuracy is a measured
  value and stays in the comparisons (diverged runs have none and are dropped, and counted, there).
* The signal at initialisation: the std of the logits on the probe batch (diagnostics, epoch 0), relative
  to the reference init's (He) at the same depth and seed. It depends on init, depth and seed only.
* The init effect at each depth: levels.compare_within (every init against the best one, the seed as the
  unit: pooled, each seed's differences averaged over the optimizers), on final and on epoch-1 validation
  accuracy. "Larger than seed noise" is the report's one decision rule: adjusted p <= alpha. Scanning the
  depths for the first one where init matters is one family per metric: the pooled comparisons of all depths
  are Holm-corrected together, and so are the per-optimizer comparisons of all depths.
* Which optimizers hide the effect: at the depths where the pooled effect is detected, an adaptive optimizer
  (one whose class scales each parameter's step by its gradient history: Adam, RMSprop, ...) whose own
  comparison does not detect it is said to hide it only when its effect is shown to be smaller than under a
  non-adaptive optimizer that detects it (the difference of the two effects, seed by seed, one Holm family);
  a non-rejection alone is not evidence, and an untestable optimizer is called untestable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from fmnist_initopt import levels  # noqa: E402
from fmnist_initopt.atomic import atomic_path  # noqa: E402
from fmnist_initopt.signflip import N_RESAMPLES  # noqa: E402

HEADING = "## Does initialisation decide convergence?"
CHANCE_ACCURACY = 0.10  # FashionMNIST: ten balanced classes
# Final validation accuracy below this counts as "did not train": chance plus a margin wide enough for the
# drift of an untrained network's argmax, far below anything a trained run reaches in one epoch (~0.7).
DID_NOT_TRAIN_BELOW = 0.20
REFERENCE_INIT = "he"  # the init whose derivation keeps the signal's variance; the signal ratios divide by it
OUTCOMES = ("trained", "did not train", "diverged")
METRIC_LABELS = {
    "final_val_accuracy": "final validation accuracy",
    "epoch1_val_accuracy": "epoch-1 validation accuracy",
}
TABLE_COLUMNS = [
    "depth",
    "init",
    "optimizer",
    "optimizer_class",
    "seed",
    "outcome",
    "epoch1_val_accuracy",
    "final_val_accuracy",
    "logit_std",
    "parameters",
]


def outcome(metrics: dict[str, Any]) -> str:
    if metrics["status"] == "diverged":
        return "diverged"
    accuracy = metrics["history"]["val_accuracy"]
    return "trained" if accuracy and accuracy[-1] >= DID_NOT_TRAIN_BELOW else "did not train"


def _logit_std_at_init(metrics: dict[str, Any]) -> float:
    found = metrics["diagnostics"]
    value = found["activation_std"][found["layers"][-1]][0]
    return math.nan if value is None else float(value)


def depth_table(metrics_list: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: its (depth, init, optimizer, seed), outcome, epoch-1 and final validation accuracy
    (NaN for a diverged run), and its logits' std at initialisation."""
    rows = []
    for metrics in metrics_list:
        run, accuracy = metrics["run"], metrics["history"]["val_accuracy"]
        result = outcome(metrics)
        completed = result != "diverged"
        rows.append(
            {
                "depth": int(run.get("depth", 0)),  # runs written before depth existed are the brief's CNN
                "init": run["init"],
                "optimizer": run["optimizer"],
                "optimizer_class": metrics["spec"]["optimizer_class"],
                "seed": run["seed"],
                "outcome": result,
                "epoch1_val_accuracy": accuracy[0] if completed and accuracy else math.nan,
                "final_val_accuracy": accuracy[-1] if completed and accuracy else math.nan,
                "logit_std": _logit_std_at_init(metrics),
                "parameters": metrics.get("model", {}).get("parameters"),
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def outcome_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (depth, init, optimizer): runs, how many trained / did not / diverged, and the epoch-1 and final
    validation accuracy (mean, min, max over the runs that have one)."""
    grouped = table.groupby(["depth", "init", "optimizer"], sort=True)
    summary = grouped.agg(
        runs=("seed", "count"),
        **{name.replace(" ", "_"): ("outcome", lambda s, name=name: int((s == name).sum())) for name in OUTCOMES},
        **{
            f"{metric}_{stat}": (metric, stat)
            for metric in ("epoch1_val_accuracy", "final_val_accuracy")
            for stat in ("mean", "min", "max")
        },
    )
    return summary.reset_index()


def signal_reference(inits: Sequence[str], table: pd.DataFrame) -> str:
    """He when it was trained; otherwise the init whose logits are strongest at initialisation."""
    if REFERENCE_INIT in inits:
        return REFERENCE_INIT
    return str(table.groupby("init")["logit_std"].mean().idxmax())


def signal_summary(table: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The reference init and, per (depth, init), the logits' std at initialisation (mean over seeds) and its
    ratio to the reference's at the same depth and seed (mean, min, max over seeds)."""
    at_init = table.drop_duplicates(["depth", "init", "seed"])  # the snapshot does not depend on the optimizer
    reference = signal_reference(list(at_init["init"].unique()), at_init)
    wide = at_init.pivot_table(index=["depth", "seed"], columns="init", values="logit_std", aggfunc="first")
    rows = []
    for (depth, init), group in at_init.groupby(["depth", "init"], sort=True):
        by_seed = wide.loc[depth]
        ratios = (by_seed[init] / by_seed[reference]).dropna() if reference in by_seed else pd.Series(dtype=float)
        rows.append(
            {
                "depth": depth,
                "init": init,
                "logit_std": group["logit_std"].mean(),
                "ratio_mean": ratios.mean() if len(ratios) else math.nan,
                "ratio_min": ratios.min() if len(ratios) else math.nan,
                "ratio_max": ratios.max() if len(ratios) else math.nan,
                "seeds": len(ratios),
            }
        )
    return reference, pd.DataFrame(rows)


@dataclass(frozen=True)
class DepthEffect:
    """The init comparisons of one metric at one depth: pooled over the optimizers seed by seed (one Holm family
    across all depths) and per optimizer (one family across all depths and optimizers)."""

    depth: int
    reference: str | None  # the best-mean init at this depth; None when fewer than two inits have values
    pooled: tuple  # stats.Comparison, other init - reference, the seed as the unit
    per_optimizer: dict  # optimizer -> tuple of stats.Comparison
    levels: int  # inits compared at this depth (2: the sign-flip test; more: the max-statistic test)
    status: str

    @property
    def detected(self) -> bool:
        return any(c.verdict == "different" for c in self.pooled)

    def detected_under(self, optimizer: str) -> bool:
        return any(c.verdict == "different" for c in self.per_optimizer.get(optimizer, ()))

    def untestable_under(self, optimizer: str) -> bool:
        return all(c.verdict == "untestable" for c in self.per_optimizer.get(optimizer, ()))


def init_effects_by_depth(
    table: pd.DataFrame, metric: str, confidence: float, n_resamples: int = N_RESAMPLES
) -> list[DepthEffect]:
    """Per depth (increasing): every init against the best one on `metric`, pooled over optimizers and per
    optimizer; each of the two kinds is one Holm family across all depths (the scan for where init matters)."""
    table = table.sort_values("depth", kind="stable")
    pooled = levels.compare_within(
        table, metric, "init", ("depth",), confidence, over=("optimizer",), n_resamples=n_resamples
    )
    per = levels.compare_within(table, metric, "init", ("depth", "optimizer"), confidence, n_resamples=n_resamples)
    result = []
    for found in pooled:
        depth = found.scope["depth"]
        by_optimizer = {s.scope["optimizer"]: s.comparisons for s in per if s.scope["depth"] == depth}
        result.append(
            DepthEffect(int(depth), found.reference, found.comparisons, by_optimizer, len(found.means), found.status)
        )
    return result


# --- The figure ----------------------------------------------------------------------------------------


def depth_figure(metrics_list: list[dict[str, Any]], path: str | Path) -> None:
    """Validation accuracy against depth, one panel per optimizer, one colour per init: final accuracy solid,
    epoch-1 accuracy dashed, mean over seeds with min–max bars; chance dotted; failed runs as crosses."""
    table = depth_table(metrics_list)
    summary = outcome_summary(table)
    optimizers = list(dict.fromkeys(table["optimizer"]))
    inits = list(dict.fromkeys(table["init"]))
    colours = {init: plt.get_cmap("tab10")(index % 10) for index, init in enumerate(inits)}
    figure, axes = plt.subplots(1, len(optimizers), figsize=(4.2 * len(optimizers), 3.8), sharey=True, squeeze=False)
    for axis, optimizer in zip(axes[0], optimizers):
        for init in inits:
            group = summary[(summary["optimizer"] == optimizer) & (summary["init"] == init)].sort_values("depth")
            for metric, style in (("final_val_accuracy", "-"), ("epoch1_val_accuracy", "--")):
                mean = group[f"{metric}_mean"]
                errors = [mean - group[f"{metric}_min"], group[f"{metric}_max"] - mean]
                axis.errorbar(
                    group["depth"],
                    mean,
                    yerr=errors,
                    color=colours[init],
                    linestyle=style,
                    marker="o",
                    capsize=3,
                )
            failed = table[
                (table["optimizer"] == optimizer) & (table["init"] == init) & (table["outcome"] != "trained")
            ]
            axis.scatter(
                failed["depth"], failed["final_val_accuracy"].fillna(0.0), marker="x", color=colours[init], s=50
            )
        axis.axhline(CHANCE_ACCURACY, color="grey", linestyle=":")
        axis.set_xticks(sorted(table["depth"].unique()))
        axis.set_xlabel("extra conv layers (0 = the brief's CNN)")
        axis.set_title(optimizer)
        axis.set_ylim(0, 1)
        axis.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    handles = [Line2D([], [], color=colours[init], marker="o", label=init) for init in inits] + [
        Line2D([], [], color="black", label="final"),
        Line2D([], [], color="black", linestyle="--", label="epoch 1"),
        Line2D([], [], color="black", marker="x", linestyle="", label="did not train\n(diverged: at 0)"),
        Line2D([], [], color="grey", linestyle=":", label=f"chance ({CHANCE_ACCURACY:.2f})"),
    ]
    figure.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    figure.suptitle("Validation accuracy against depth (mean over seeds, bars: min–max)")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
