"""Per-epoch checkpoints, so a killed or preempted run resumes after its last finished epoch.

A checkpoint is bound to everything that shapes an epoch: the run's spec (its fingerprint, which holds the
data's checksums), the training code, PyTorch's version and the precision the run computes in. A resumed
run continues only a checkpoint whose binding matches in every part; otherwise it starts afresh and its
log says which part differed, so no run ever mixes epochs computed differently.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from fmnist_initopt.atomic import atomic_path
from fmnist_initopt.study import RunSpec, training_code_sha256

log = logging.getLogger(__name__)

# What each part of the binding means, for the log line that says why a checkpoint was not used.
BINDING_PARTS = {
    "spec_sha256": "run settings or data",
    "training_code_sha256": "training code",
    "torch": "PyTorch version",
    "precision": "precision",
}


def identity(precision: str) -> dict[str, str]:
    """What a run is computed with besides its spec (metrics.json's `identity`)."""
    return {"training_code_sha256": training_code_sha256(), "torch": str(torch.__version__), "precision": precision}


def binding(spec: RunSpec, precision: str) -> dict[str, str]:
    """Everything a checkpoint must match to be resumed: the spec and the run's identity."""
    return {"spec_sha256": spec.fingerprint(), **identity(precision)}


def save(path: Path, bound_to: dict[str, str], model, optimizer, state: dict[str, Any]) -> None:
    """Written to a temporary file and renamed, so a kill leaves the previous epoch's checkpoint or none."""
    with atomic_path(path) as tmp:
        torch.save(
            {
                "binding": bound_to,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                **state,
            },
            tmp,
        )


def mismatches(saved: dict[str, Any], bound_to: dict[str, str]) -> list[str]:
    """The parts of `bound_to` that a saved binding lacks or holds differently, described."""
    return [
        f"{BINDING_PARTS.get(part, part)} ({saved.get(part, 'not recorded')} there, {value} now)"
        for part, value in bound_to.items()
        if saved.get(part) != value
    ]


def load(path: Path | None, bound_to: dict[str, str], device: torch.device) -> dict[str, Any] | None:
    """The saved state, or None when there is none or it was computed otherwise than `bound_to` says
    (logged with the reason: the run then starts afresh)."""
    if path is None or not path.is_file():
        return None
    saved = torch.load(path, map_location=device, weights_only=True)
    differences = mismatches(saved.get("binding") or {}, bound_to)
    if differences:
        log.warning("starting afresh: checkpoint %s was computed with other %s", path, "; other ".join(differences))
        return None
    return saved
