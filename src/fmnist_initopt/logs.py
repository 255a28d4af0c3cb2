"""Logging for the Snakemake entry scripts: the rule's log file and the console both see progress."""

from __future__ import annotations

import logging
import sys


def log_to(path: str) -> logging.Logger:
    handlers = [logging.FileHandler(path, mode="w"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    return logging.getLogger("fmnist-initopt")
