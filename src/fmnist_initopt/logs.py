"""Logging for the Snakemake entry scripts: the rule's log file and the console both see progress."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def log_to(path: str) -> logging.Logger:
    handlers = [logging.FileHandler(path, mode="w"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    return logging.getLogger("fmnist-initopt")


@contextmanager
def logged(path: str, failure: str) -> Iterator[logging.Logger]:
    """An entry script's body: logs to the rule's log file, and a failure is written there with its
    traceback (as `failure`, e.g. "training failed") before Snakemake sees the job fail."""
    log = log_to(path)
    try:
        yield log
    except Exception:
        log.exception(failure)
        raise
