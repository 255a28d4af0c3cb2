"""A table of runs as the matrix every test uses: one row per seed (the unit), one column per level compared.

A seed's value for a level is the mean over the other factors (`over`, e.g. the optimizers when comparing
inits), taken over the blocks (seed, other level) that have a value for every level compared, so each seed's
levels are averaged over the same runs and stay comparable. Missing runs (diverged, not run) are handled by
dropping whichever keeps more of the data: the incomplete blocks, or the levels that miss most of them. What
was dropped is recorded and said in `note`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class UnitMatrix:
    values: np.ndarray  # (units, levels), finite
    units: list  # the seeds kept, in order
    levels: list  # the levels kept (tuples when several level columns), in order of first appearance
    dropped_levels: list  # levels with values that were dropped because they missed too many blocks
    empty_levels: list  # levels without any finite value
    dropped_blocks: int  # (seed, other levels) blocks dropped because a kept level had no value there
    note: str  # what was dropped, in words ("" when nothing)


def _key(row, columns):
    return tuple(row) if len(columns) > 1 else row[0]


def _keep(table: pd.DataFrame) -> tuple[list, pd.Index]:
    """Levels and rows to keep: drop the j levels with most missing rows, then every incomplete row, for the j
    that keeps most cells (at least two levels when possible; fewest levels dropped on ties)."""
    missing = table.isna().sum().sort_values(ascending=False, kind="stable")
    best = None
    for j in range(max(1, table.shape[1] - 1)):
        levels = [c for c in table.columns if c not in set(missing.index[:j])]
        rows = table.index[table[levels].notna().all(axis=1)]
        if best is None or len(rows) * len(levels) > len(best[1]) * len(best[0]):
            best = (levels, rows)
    return best


def unit_matrix(frame: pd.DataFrame, response: str, level_cols, unit_cols=("seed",), over=()) -> UnitMatrix:
    """The seeds x levels matrix of `response` (see the module docstring). Duplicate runs of one cell are
    averaged. `level_cols`: one column name or several (levels are then tuples)."""
    level_cols = [level_cols] if isinstance(level_cols, str) else list(level_cols)
    unit_cols, over = list(unit_cols), list(over)
    firsts = frame[level_cols].drop_duplicates()  # in order of first appearance
    order = [_key(r, level_cols) for r in firsts.itertuples(index=False, name=None)]
    y = pd.to_numeric(frame[response], errors="coerce")
    data = frame.loc[np.isfinite(y), unit_cols + over + level_cols].assign(_y=y[np.isfinite(y)])
    if data.empty:
        return UnitMatrix(np.empty((0, 0)), [], [], [], order, 0, f"no run has a finite {response}")
    table = data.pivot_table(index=unit_cols + over, columns=level_cols, values="_y", aggfunc="mean")
    present = [level for level in order if level in table.columns]
    empty = [level for level in order if level not in present]
    table = table[present]
    levels, rows = _keep(table)
    dropped_levels = [level for level in present if level not in levels]
    kept = table.loc[rows, levels]
    per_unit = kept.groupby(level=list(range(len(unit_cols)))).mean() if over else kept
    notes = []
    if empty:
        notes.append(f"{len(empty)} level(s) without a finite {response}: {', '.join(map(str, empty))}")
    if dropped_levels:
        notes.append(f"left out for missing runs: {', '.join(map(str, dropped_levels))}")
    dropped_blocks = len(table) - len(rows)
    if dropped_blocks:
        block = f"({', '.join(unit_cols + over)})" if over else "/".join(unit_cols)
        notes.append(f"{dropped_blocks} {block} block(s) without a value for every level dropped")
    units = [_key(u, unit_cols) if isinstance(u, tuple) else u for u in per_unit.index]
    return UnitMatrix(
        per_unit.to_numpy(dtype=float), units, levels, dropped_levels, empty, dropped_blocks, "; ".join(notes)
    )
