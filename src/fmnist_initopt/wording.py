"""The one way the reports write numbers, p-values, percentage points, plurals, lists and tables.

Every section (findings, depth, generalization, cost, ...) formats through these functions, so a value reads
the same everywhere and a printed p-value can never disagree with the verdict beside it: `p_text` prints as
many significant digits as it takes for the printed value to fall on the same side of alpha as the value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from fmnist_initopt import stats

NOT_AVAILABLE = "n/a"
P_FLOOR = 0.001  # below this a p-value prints as "< 0.001"


def finite(value: Any) -> bool:
    """A real number that is not NaN or infinite (None, strings and NA are not)."""
    try:
        return value is not None and not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def number(value: float | None, digits: int = 4) -> str:
    """A fixed-point number; a value that rounds to zero prints without a minus sign ("0.00", never "-0.00")."""
    if not finite(value):
        return NOT_AVAILABLE
    text = f"{float(value):.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def signed(value: float | None, digits: int = 2) -> str:
    """A fixed-point number with its sign ("+0.52", "-0.10"; zero as "+0.00")."""
    if not finite(value):
        return NOT_AVAILABLE
    text = number(value, digits)
    return text if text.startswith("-") else f"+{text}"


def percent_points(value: float | None, digits: int = 2, sign: bool = False) -> str:
    """A difference of two accuracies (fractions) in percentage points: 0.0034 -> "0.34 pp"."""
    if not finite(value):
        return NOT_AVAILABLE
    return f"{(signed if sign else number)(float(value) * 100, digits)} pp"


def percent(value: float | None, digits: int = 1) -> str:
    """An accuracy (a fraction) as a percentage: 0.912 -> "91.2%"."""
    return f"{float(value) * 100:.{digits}f}%" if finite(value) else NOT_AVAILABLE


def ratio(value: float | None) -> str:
    return f"{float(value):.3g}" if finite(value) else NOT_AVAILABLE


def p_text(p: float | None, alpha: float | None = None) -> str:
    """A p-value as printed beside its verdict: stats.display_p's digits, so the printed value is at most alpha
    exactly when the value is, and equals alpha only when the value does (0.0498 prints "0.0498", never "0.05"
    beside alpha 0.05). Below 0.001 (when alpha is above it) "< 0.001". Without alpha, two significant digits."""
    if not finite(p):
        return NOT_AVAILABLE
    p = float(p)
    if p < P_FLOOR and (alpha is None or alpha > P_FLOOR):
        return f"< {P_FLOOR:g}"
    if alpha is None:
        return f"{p:.2g}"
    text = repr(stats.display_p(p, alpha))  # the shortest text that reads back as that float: no digit lost
    return text.removesuffix(".0")


def p_is(p: float | None, alpha: float | None = None) -> str:
    """For prose: "p = 0.031", "p < 0.001", or "p n/a"."""
    text = p_text(p, alpha)
    return f"p {text}" if text.startswith("<") or text == NOT_AVAILABLE else f"p = {text}"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """The noun for `count` things: 1 seed, 2 seeds (irregular plurals passed as `nouns`)."""
    return noun if count == 1 else (nouns or f"{noun}s")


def count(number_of: int, noun: str, nouns: str | None = None) -> str:
    """ "1 seed", "6 seeds"."""
    return f"{number_of} {plural(number_of, noun, nouns)}"


def listing(items: Iterable[Any], bold: bool = False) -> str:
    """ "a", "a and b", "a, b and c" (each **bold** when asked)."""
    words = [f"**{item}**" if bold else str(item) for item in items]
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def names(items: Iterable[Any]) -> str:
    """Names in prose, each in bold: "**he**, **xavier** and **orthogonal**"."""
    return listing(items, bold=True)


def unique(values: Iterable[Any]) -> list:
    """The distinct values in order of first appearance."""
    return list(dict.fromkeys(values))


def one_or_all(values: Iterable[Any]) -> str:
    """The value every run shares, or all of them marked as differing."""
    items = unique(values)
    return str(items[0]) if len(items) == 1 else " / ".join(map(str, items)) + " (differs between runs)"


def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A pipe table of already formatted cells ("" for no rows)."""
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else ""


def keyword_arguments(kwargs: dict[str, Any]) -> str:
    """Call arguments as written in Python-like JSON: lr=0.01, nesterov=true, betas=[0.9, 0.999]."""
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in kwargs.items())


def mean_with_interval(
    values, confidence: float, digits: int = 4, limits: tuple[float, float] | None = None, scale: float = 1.0
) -> str:
    """Mean over seeds with its descriptive interval (stats.mean_interval) when there are two or more values,
    cut to the metric's possible `limits` (with two seeds a t-interval of an accuracy can reach beyond 0 and 1)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return NOT_AVAILABLE
    text = number(float(values.mean()) * scale, digits)
    low, high = stats.mean_interval(values, confidence)
    if limits:
        low, high = max(low, limits[0]), min(high, limits[1])
    if math.isnan(low):
        return text
    return f"{text} [{number(low * scale, digits)}, {number(high * scale, digits)}]"


def accuracy_with_interval(values, confidence: float) -> str:
    return mean_with_interval(values, confidence, limits=(0.0, 1.0))
