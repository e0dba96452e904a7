"""The command line a benchmark records in its results (quoted so that it can be pasted back)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Sequence


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """``python benchmarks/<script's file name> <args>``; ``argv`` defaults to ``sys.argv[1:]``."""
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *(sys.argv[1:] if argv is None else argv)])
