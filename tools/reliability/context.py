"""What the command line decided, handed to every measurement, and the statistics they share."""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Context:
    """``runs`` None: each measurement's own default. ``timeout``: the bound of every process run, in seconds."""

    runs: int | None = None
    timeout: float = 120.0
    tmp_dir: str | None = None
    verbose: bool = True
    seed: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def runs_for(self, default: int) -> int:
        return self.runs if self.runs is not None else default

    def folder(self, name: str) -> Path:
        """A new empty folder for one run's files (under --tmp-dir, else the system's temp dir)."""
        return Path(tempfile.mkdtemp(prefix=f"reliability-{name}-", dir=self.tmp_dir))

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"[reliability {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def spread(values: list[float]) -> dict:
    """Median, min and max (None each for no values), and the count."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}
