"""The numerical conditions of the runs: the precision and device of every epoch (`history.precision`,
`history.device`). A combination whose runs, or whose run's epochs, mixed precisions or devices compares
results computed under different arithmetic, so the findings say so; when every epoch of a combination ran
alike they say nothing. Runs recorded before the per-epoch record existed fall back to the run's own field."""

from __future__ import annotations

import pandas as pd

from fmnist_initopt.aggregate import combination_label
from fmnist_initopt.wording import count, listing

# (what is mixed, the per-epoch column, the run-level column)
CONDITIONS = (("precisions", "epoch_precisions", "run_precision"), ("devices", "epoch_devices", "run_device"))


def _text(value) -> str:
    return "" if pd.isna(value) else str(value)


def run_conditions(frame: pd.DataFrame, epoch_column: str, run_column: str) -> pd.Series:
    """Per run, what its epochs used ("fp32", "bf16/fp32"): the per-epoch record, else the run's own field,
    else "" (unknown)."""
    epochs = frame[epoch_column].map(_text) if epoch_column in frame else pd.Series("", index=frame.index)
    runs = frame[run_column].map(_text) if run_column in frame else pd.Series("", index=frame.index)
    return epochs.where(epochs != "", runs)


def mixed_condition_lines(frame: pd.DataFrame) -> list[str]:
    """One line per combination whose runs or epochs mixed precisions or devices; none when all ran alike."""
    lines = []
    for (init, optimizer), runs in frame.groupby(["init", "optimizer"], sort=False):
        found = []
        for what, epoch_column, run_column in CONDITIONS:
            used = run_conditions(runs, epoch_column, run_column)
            known = used[used != ""]
            within = known[known.str.contains("/", regex=False)]
            if within.empty and known.nunique() <= 1:
                continue
            seeds = {value: runs.loc[group.index, "seed"].tolist() for value, group in known.groupby(known, sort=False)}
            across = listing(f"{value.replace('/', ' and ')} ({_seeds(s)})" for value, s in seeds.items())
            text = f"{what} across its runs: {across}" if known.nunique() > 1 else f"{what}"
            if not within.empty:
                text += f"; {count(len(within), 'run')} changed {what} between epochs ({_seeds(runs.loc[within.index, 'seed'])})"
            found.append(text)
        if found:
            lines.append(
                f"- **{combination_label(init, optimizer)}** mixes {'; and '.join(found)}: its runs were not all "
                "computed under the same arithmetic, so its means and comparisons mix the two."
            )
    return lines


def _seeds(seeds) -> str:
    seeds = list(seeds)
    return f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}"


def unrecorded_note(frame: pd.DataFrame) -> str:
    """Methods' note when some runs did not record the precision and device of each epoch (older files)."""
    missing = int((frame["epoch_precisions"].map(_text) == "").sum()) if "epoch_precisions" in frame else len(frame)
    if not missing:
        return ""
    return (
        f"{count(missing, 'run')} of {len(frame)} did not record the precision and device of each epoch (metrics "
        "written before that record existed): for them only the precision and device at the end are known."
    )
