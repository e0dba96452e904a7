"""What the benchmark scripts share; they import only ``dgflow`` and this package.

The scripts are run as ``python benchmarks/NAME.py ...`` from the repository root, which puts
``benchmarks/`` on ``sys.path`` (the script's own directory), so ``import benchlib`` finds this
package with no path manipulation. This module stays light (no torch import); the heavier parts
are submodules, imported where needed:

* :mod:`benchlib.bases` -- the generator/critic pairs: shipped GANs through ``dgflow.zoo``, the
  2D toy bases (built, trained, cached and loaded in one place);
* :mod:`benchlib.images` -- the image setups (Fashion-MNIST, the CIFAR10/STL10 configs) and the
  disjoint train-split subsets the image benchmarks hold out;
* :mod:`benchlib.evaluation` -- the FID evaluation of refinement methods shared by the FID tables
  (methods, recorded trajectories, stopping rules, references, Markdown and plots);
* :mod:`benchlib.safe` -- the bases, scorers and shared runs of the safe-defaults study;
* :mod:`benchlib.text_report` -- the text table's Markdown and figure;
* :mod:`benchlib.memory` -- peak-memory measurement in a fresh process (for ``speed.py``);
* :mod:`benchlib.resume` -- checkpoints and loss logs of resumable GAN training runs.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Callable, Sequence

BENCHMARKS = Path(__file__).resolve().parents[1]
ROOT = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
BASES_DIR = RESULTS / "bases"  # cached bases that are not shipped with the package
SCRATCH = RESULTS / "_scratch"  # git-ignored: caches and smoke runs


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line a benchmark records in its results, quoted so that it can be pasted back:
    ``python benchmarks/<script's file name> <args>``; ``argv`` defaults to ``sys.argv[1:]``."""
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *(sys.argv[1:] if argv is None else argv)])


def display_path(path: str | Path) -> str:
    """``path`` relative to the repository root when it lies below it, else absolute (for results)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_results(out: str | Path, record: dict, markdown: str, plot: Callable[[Path], None]) -> None:
    """A benchmark's results: ``record`` as ``out``.json, ``markdown`` as ``out``.md (also printed) and
    ``plot(path)``'s figure as ``out``.png."""
    out = Path(out)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown)
    plot(out.with_suffix(".png"))
    print(markdown)


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (the benchmarks only write files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
