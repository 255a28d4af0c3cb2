"""Signal-propagation analysis: pure functions of metrics.json dictionaries (their `diagnostics`).

At initialisation the snapshot depends on the init and the seed only (not on the optimizer), so
each (init, seed) is counted once. "Weaker signal" means the smaller activation std at the last
layer (the logits) at initialisation, averaged over seeds: the signal that reaches the output.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats


def init_signal_table(metrics_list: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (init, seed, layer) at initialisation: activation std and weight-gradient norm."""
    rows, seen = [], set()
    for metrics in metrics_list:
        key = (metrics["run"]["init"], metrics["run"]["seed"])
        if key in seen:
            continue
        seen.add(key)
        found = metrics["diagnostics"]
        for depth, layer in enumerate(found["layers"]):
            rows.append(
                {
                    "init": key[0],
                    "seed": key[1],
                    "depth": depth,
                    "layer": layer,
                    "activation_std": found["activation_std"][layer][0],
                    "weight_grad_norm": found["weight_grad_norm"][layer][0],
                }
            )
    return pd.DataFrame(rows)


def layer_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (init, layer), in network order: mean, min and max over seeds of both quantities."""
    grouped = table.groupby(["init", "depth", "layer"])
    summary = grouped.agg(
        activation_std=("activation_std", "mean"),
        activation_std_min=("activation_std", "min"),
        activation_std_max=("activation_std", "max"),
        weight_grad_norm=("weight_grad_norm", "mean"),
        weight_grad_norm_min=("weight_grad_norm", "min"),
        weight_grad_norm_max=("weight_grad_norm", "max"),
    )
    return summary.reset_index().sort_values(["init", "depth"]).reset_index(drop=True)


def signal_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Per init: last-layer over first-layer activation std at init (per seed, then mean/min/max)
    and the mean last-layer std."""
    first, last = table["depth"].min(), table["depth"].max()
    rows = []
    for init, group in table.groupby("init"):
        by_seed = group.set_index(["seed", "depth"])["activation_std"].unstack("depth")
        ratio = by_seed[last] / by_seed[first]
        rows.append(
            {
                "init": init,
                "first_layer": group.loc[group["depth"] == first, "layer"].iloc[0],
                "last_layer": group.loc[group["depth"] == last, "layer"].iloc[0],
                "first_std": by_seed[first].mean(),
                "last_std": by_seed[last].mean(),
                "ratio_mean": ratio.mean(),
                "ratio_min": ratio.min(),
                "ratio_max": ratio.max(),
                "seeds": len(ratio),
            }
        )
    return pd.DataFrame(rows)


def weaker_init(ratios: pd.DataFrame) -> str:
    return str(ratios.loc[ratios["last_std"].idxmin(), "init"])


def first_epoch_comparison(
    metrics_list: list[dict[str, Any]], weak: str, strong: str, confidence: float
) -> pd.DataFrame:
    """Per optimizer: validation accuracy after epoch 1 of the weak- and the strong-signal init
    (mean and std over seeds), the difference, and a Welch t-test where both have two or more seeds."""
    rows = []
    for metrics in metrics_list:
        history = metrics["history"]
        if history["val_accuracy"]:
            rows.append(
                {
                    "init": metrics["run"]["init"],
                    "optimizer": metrics["run"]["optimizer"],
                    "val_accuracy": history["val_accuracy"][0],
                }
            )
    table = pd.DataFrame(rows, columns=["init", "optimizer", "val_accuracy"])
    learning_rates = {(m["run"]["optimizer"], float(m["spec"]["optimizer_kwargs"]["lr"])) for m in metrics_list}
    if len(learning_rates) != table["optimizer"].nunique():
        raise ValueError("first_epoch_comparison needs one learning rate per optimizer (the grid runs, not the sweep)")
    result = []
    for optimizer, group in table.groupby("optimizer", sort=False):
        weak_values = group.loc[group["init"] == weak, "val_accuracy"]
        strong_values = group.loc[group["init"] == strong, "val_accuracy"]
        if weak_values.empty or strong_values.empty:
            continue
        difference = weak_values.mean() - strong_values.mean()
        p_value = math.nan
        if len(weak_values) >= 2 and len(strong_values) >= 2:
            p_value = stats.ttest_ind(weak_values, strong_values, equal_var=False).pvalue
        if math.isnan(p_value):
            verdict = "one seed or no spread: seed noise unknown" if difference else "no difference"
        elif p_value >= 1 - confidence:
            verdict = "within seed noise"
        else:
            verdict = "slower" if difference < 0 else "faster"
        result.append(
            {
                "optimizer": optimizer,
                "weak_mean": weak_values.mean(),
                "weak_std": weak_values.std(),
                "strong_mean": strong_values.mean(),
                "strong_std": strong_values.std(),
                "difference": difference,
                "p_value": p_value,
                "seeds": min(len(weak_values), len(strong_values)),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(result)


def _number(value: float) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.3g}"


def _percent_with_spread(mean: float, std: float) -> str:
    return f"{100 * mean:.2f}%" + ("" if pd.isna(std) else f" ± {100 * std:.2f}")


def signal_section(metrics_list: list[dict[str, Any]], confidence: float) -> str:
    """The findings' signal-propagation section as Markdown, every statement computed from the runs."""
    table = init_signal_table(metrics_list)
    summary = layer_summary(table)
    ratios = signal_ratios(table)
    probe_size = metrics_list[0]["diagnostics"]["probe_size"]
    several_seeds = table.groupby("init")["seed"].nunique().min() > 1
    lines = [
        "## Why: signal propagation at initialisation",
        "",
        f"Measured on a fixed probe batch of {probe_size} training images, the same for every run: the standard "
        "deviation of each layer's output before its ReLU (for the last layer, the logits) and the norm of its "
        "weight gradient, right after initialisation"
        + ("; mean over seeds (min–max in brackets)." if several_seeds else " (one seed)."),
        "",
    ]

    def spread(mean, low, high):
        return f"{_number(mean)} [{_number(low)}–{_number(high)}]" if several_seeds else _number(mean)

    shown = pd.DataFrame(
        {
            "init": summary["init"],
            "layer": summary["layer"],
            "activation std": [
                spread(m, lo, hi)
                for m, lo, hi in zip(
                    summary["activation_std"], summary["activation_std_min"], summary["activation_std_max"]
                )
            ],
            "weight-gradient norm": [
                spread(m, lo, hi)
                for m, lo, hi in zip(
                    summary["weight_grad_norm"], summary["weight_grad_norm_min"], summary["weight_grad_norm_max"]
                )
            ],
        }
    )
    lines += [shown.to_markdown(index=False), ""]
    for row in ratios.itertuples():
        lines.append(
            f"- **{row.init}**: activation std goes from {_number(row.first_std)} at {row.first_layer} to "
            f"{_number(row.last_std)} at {row.last_layer}, a ratio of {_number(row.ratio_mean)} "
            f"(seeds: {_number(row.ratio_min)}–{_number(row.ratio_max)}, n={row.seeds})."
        )
    lines.append("")
    if len(ratios) < 2:
        return "\n".join(lines) + "\n"
    weak = weaker_init(ratios)
    strong = str(ratios.loc[ratios["last_std"].idxmax(), "init"])
    by_init = ratios.set_index("init")
    lines += [
        f"**{weak}** sends the weaker signal to the output: its logits' std at initialisation is "
        f"{_number(by_init.loc[weak, 'last_std'] / by_init.loc[strong, 'last_std'])} times {strong}'s.",
        "",
        f"Did it converge more slowly in the first epoch? Validation accuracy after epoch 1, mean ± std over seeds "
        f"(Welch t-test, significance level {1 - confidence:.2g}):",
        "",
    ]
    comparison = first_epoch_comparison(metrics_list, weak, strong, confidence)
    shown = pd.DataFrame(
        {
            "optimizer": comparison["optimizer"],
            weak: [_percent_with_spread(m, s) for m, s in zip(comparison["weak_mean"], comparison["weak_std"])],
            strong: [_percent_with_spread(m, s) for m, s in zip(comparison["strong_mean"], comparison["strong_std"])],
            f"{weak} − {strong}": comparison["difference"].map(lambda d: f"{100 * d:+.2f} pp"),
            "p": comparison["p_value"].map(_number),
            f"{weak} in epoch 1": comparison["verdict"],
        }
    )
    lines += [shown.to_markdown(index=False), ""]
    lower = comparison.loc[comparison["difference"] < 0, "optimizer"].tolist()
    summary_line = (
        f"{weak}'s mean epoch-1 validation accuracy was lower with {len(lower)} of {len(comparison)} optimizers"
    )
    summary_line += f" ({', '.join(lower)})." if lower else "."
    tested = comparison[comparison["p_value"].notna()]
    if tested.empty:
        summary_line += (
            " With one seed per combination the seed noise is unknown, so none of these differences is tested."
        )
    else:
        slower = tested.loc[tested["verdict"] == "slower", "optimizer"].tolist()
        summary_line += (
            f" It was significantly slower in the first epoch with {len(slower)} of {len(tested)} optimizers"
            + (f" ({', '.join(slower)})" if slower else "")
            + "; the other differences are within seed noise or in its favour."
        )
    lines.append(summary_line)
    return "\n".join(lines) + "\n"
