"""Per-epoch checkpoints, so a killed or preempted run resumes after its last finished epoch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from fmnist_initopt.atomic import atomic_path
from fmnist_initopt.study import RunSpec

log = logging.getLogger(__name__)


def save(path: Path, spec: RunSpec, model, optimizer, state: dict[str, Any]) -> None:
    """Written to a temporary file and renamed, so a kill leaves the previous epoch's checkpoint or none."""
    with atomic_path(path) as tmp:
        torch.save(
            {
                "fingerprint": spec.fingerprint(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                **state,
            },
            tmp,
        )


def load(path: Path | None, spec: RunSpec, device: torch.device) -> dict[str, Any] | None:
    """The saved state, or None when there is none or it belongs to other settings (a changed config)."""
    if path is None or not path.is_file():
        return None
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    if checkpoint.get("fingerprint") != spec.fingerprint():
        log.warning("ignoring checkpoint %s: it belongs to other settings", path)
        return None
    return checkpoint
