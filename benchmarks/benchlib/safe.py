"""The bases, scorers and shared runs of the safe-defaults study (``benchmarks/safe_defaults.py``).

* :func:`jobs_of` reads the development / test split (``benchmarks/configs/safe_defaults_bases.yaml``);
* :func:`setup` loads one base with its test-metric scorer, latents and held-out real samples;
* :func:`long_curve`: the default step rule run far past the budget with, every 5 steps, the test
  metric and the distances to the real samples :class:`dgflow.stopping.DataMatch` can take
  (:data:`CURVE_DISTANCES`), and
  the critic's raw and Platt-calibrated estimated gain at step 0 (what the real-data rule is
  designed from, on the development half);
* :func:`replay_datamatch`: what DataMatch with a given budget, patience, distance and tolerance
  returns on such a curve.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import yaml

import dgflow
import dgflow.calibration
import dgflow.data_match
import dgflow.distances
import dgflow.engine
import dgflow.flow
import dgflow.gain
import dgflow.solvers
import dgflow.stopping
import dgflow.zoo
from dgflow.data_match import within_bound
from dgflow.io import read_metadata
from dgflow.passes import logits as critic_logits
from dgflow.stopping import DataMatch, calibrated_gain, estimated_gain

from . import BASES_DIR, BENCHMARKS, RESULTS, SCRATCH
from .bases import load_toy2d_base, register_gan_base, toy2d_base_path

SPLIT_FILE = BENCHMARKS / "configs" / "safe_defaults_bases.yaml"
CACHE_DIR = SCRATCH / "safe_defaults"
#: the split file's halves: dev (designed on), test (run since the first rules), holdout (trained
#: after the test half's results had been seen, before any later rule was run on them), fresh
#: (declared and trained before the real-data rule's step control was designed on the other three),
#: fresh2 (declared before stop 20's work, with the step control's A/B it decides), fresh3 (declared
#: at the end of stop 20, before the veto was designed; run once in stop 21), fresh4 (declared at the
#: start of stop 22, before the veto's cap was run anywhere), fresh5 (declared at the start of stop 23,
#: before any later rule is designed; kept for the next change to a default)
HALVES = ("dev", "test", "holdout", "fresh", "fresh2", "fresh3", "fresh4", "fresh5")
#: the study's defaults for :func:`setup` (``safe_defaults.py``'s options): the latent seed, 2D latents,
#: 2D EMD points, 2D oracle scan, image latents, image oracle scan
STUDY_SETTINGS = {"seed": 0, "n": 5000, "emd_n": 1000, "max_steps": 100, "image_n": 2000, "image_max_steps": 40}


def jobs_of(split: str | Sequence[str]) -> list[dict]:
    """The bases of ``split`` (a half of :data:`HALVES`, several, or ``all``), in the split file's order."""
    spec = yaml.safe_load(SPLIT_FILE.read_text())
    names = [split] if isinstance(split, str) else list(split)
    jobs = []
    for half in HALVES if "all" in names else [h for h in HALVES if h in names]:
        for ds, loss, seed, iters in spec[half].get("toy2d", []):
            jobs.append({"half": half, "kind": "2d", "dataset": ds, "label": f"{ds} {loss} s{seed} it{iters}",
                         "path": str(toy2d_base_path(ds, loss, seed, iters))})
        for name in spec[half].get("image", []):
            jobs.append({"half": half, "kind": "image", "dataset": "fmnist", "model": name,
                         "label": name.replace(".safetensors", "").replace("_", "-")})
    return jobs


#: the library modules a ``refine(G, D, z, real=...)`` run depends on (part of its cache key)
REFINE_MODULES = (dgflow.flow, dgflow.stopping, dgflow.data_match, dgflow.gain, dgflow.distances, dgflow.calibration,
                  dgflow.engine, dgflow.solvers)


def source_hash(*modules) -> str:
    """A short hash of the modules' source files (for cache keys)."""
    return hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in modules)).hexdigest()[:12]


def cached(stage: Callable[[dict], dict], job: dict, depends: dict) -> dict:
    """``stage(job)``, cached under CACHE_DIR by the base, the study's settings (:data:`STUDY_SETTINGS`'
    keys, read from ``job["args"]``) and ``depends``; ``args.fresh`` recomputes. The result gains
    ``seconds``, the stage's wall time when it ran."""
    a = job["args"]
    settings = {"job": {k: v for k, v in job.items() if k != "args"}, **{k: getattr(a, k) for k in STUDY_SETTINGS},
                **depends}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"{job['label'].replace(' ', '_')}_{stage.__name__}_{key}.json"
    if not (cache.is_file() and not a.fresh):
        t0 = time.perf_counter()
        res = stage(job)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(res))
    return json.loads(cache.read_text())


def map_bases(fn: Callable[[dict], dict], jobs: list[dict], args, workers: int) -> list[dict]:
    """``fn({**job, "args": args})`` for every job, ``workers`` processes at a time, the image bases
    (the long runs) first; the results in the jobs' order."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        order = sorted(range(len(jobs)), key=lambda i: jobs[i]["kind"] != "image")
        done = dict(zip(order, pool.map(fn, [{**jobs[i], "args": args} for i in order])))
    return [done[i] for i in range(len(jobs))]


def load_image_base(model: str):
    """(generator, critic) of a zoo model, or of a weights file under BASES_DIR written by
    train_fmnist_gan.py (registered in a scratch zoo from its metadata, so the zoo builds it)."""
    if not model.endswith(".safetensors"):
        m = dgflow.zoo.load(model)
        return m.generator, m.critic
    path = BASES_DIR / model
    meta = read_metadata(path)
    zoo = CACHE_DIR / f"zoo_{path.stem}.yaml"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    name = f"fmnist-{meta['base']}"
    register_gan_base(zoo, name, path, meta)
    m = dgflow.zoo.load(name, zoo=zoo)
    return m.generator, m.critic


class Scorer2D:
    """EMD to ``emd_n`` fresh points (the score), HQ % and modes; ``real``: 2,000 other points."""

    def __init__(self, ds: str, seed: int, emd_n: int):
        from dgflow.data import toy2d
        self.ds, self.emd_n = ds, emd_n
        self.test = toy2d.sample(ds, emd_n, torch.Generator().manual_seed(seed + 2))
        self.real = toy2d.sample(ds, 2000, torch.Generator().manual_seed(seed + 3))

    def __call__(self, x: torch.Tensor) -> dict:
        from dgflow.metrics.toy2d import emd, report
        r = report(self.ds, x)
        return {"score": emd(x[: self.emd_n], self.test), "hq": r["hq"], "modes": r.get("modes"),
                "modes_1pct": r.get("modes_1pct")}


class ScorerImage:
    """FID (FMNIST-CNN features) against the test split; ``real``: held-out train images."""

    def __init__(self, seed: int):
        from benchlib.evaluation import reference_sets
        from dgflow.metrics import fid as fidlib
        self.fidlib = fidlib
        self.ext = fidlib.CNNFeatures.from_file()
        refs = reference_sets(self.ext, "fmnist", seed, progress=False)
        self.test, self.real = refs["test"], refs["real"]

    def __call__(self, x: torch.Tensor) -> dict:
        f = self.fidlib
        return {"score": f.frechet_distance(f.gaussian_stats(f.extract(self.ext, x, 500)), self.test)}


@dataclass
class Base:
    g: object
    d: object
    scorer: Callable[[torch.Tensor], dict]
    z: torch.Tensor
    prior: Callable[[int, int], torch.Tensor]
    max_steps: int  # the oracle scan
    batch_size: int | None

    @property
    def real(self) -> torch.Tensor:
        return self.scorer.real

    def score(self, latents: torch.Tensor) -> dict:
        return self.scorer(dgflow.generate(self.g, latents, self.batch_size))


def setup(job: dict, a) -> Base:
    """One base of the study, its scorer and its seeded latents (``a``: the script's arguments)."""
    torch.set_num_threads(1)
    if job["kind"] == "2d":
        g, d = load_toy2d_base(job["path"])
        scorer, n, max_steps, bs = Scorer2D(job["dataset"], a.seed, a.emd_n), a.n, a.max_steps, None
        prior = lambda k, s: torch.randn(k, 2, generator=torch.Generator().manual_seed(s))  # noqa: E731
    else:
        g, d = load_image_base(job["model"])
        scorer, n, max_steps, bs = ScorerImage(a.seed), a.image_n, a.image_max_steps, 500
        prior = lambda k, s: g.sample_prior(k, generator=torch.Generator().manual_seed(s))  # noqa: E731
    return Base(g, d, scorer, prior(n, a.seed), prior, max_steps, bs)


class UncappedVeto(DataMatch):
    """Stop 21's real-data default for the study's comparison rows: DataMatch whose bound is
    ``lowest + tol * (first - lowest)`` (no cap at ``1 + tol`` times the lowest, stop 22)."""

    def bound(self) -> float:
        lowest, first = self.history[self.best_step], self.history[min(self.history)]
        return lowest + self.tol * (first - lowest) if self.tol else lowest


def real_data_default(job: dict) -> dict:
    """``refine(G, D, z, real=...)`` with refine's defaults as they are at this commit, from the study's
    latents (the stage cached by :func:`real_data_default_of`)."""
    a = job["args"]
    b = setup(job, a)
    zz, info = dgflow.refine(b.g, b.d, b.z, real=b.real, batch_size=b.batch_size, generator_rng=a.seed + 4,
                             return_info=True)
    return {"step": info.stop_step, "steps_run": info.steps_run, "reason": info.stop_reason, **b.score(zz)}


def real_data_default_of(job: dict) -> dict:
    """The run of :func:`real_data_default`, cached by the library's code; its step (``None`` from
    RunInfo when the rule kept the budget's last state) as the steps run then."""
    res = cached(real_data_default, job, {"code": source_hash(*REFINE_MODULES)})
    if res["step"] is None:
        res["step"] = res["steps_run"]
    return {"label": job["label"], "half": job["half"], **res}


def noise_of(b: Base, seed: int, base_score: float) -> float:
    """The metric's noise: the standard deviation of the base's score over 3 latent seeds."""
    return statistics.stdev([base_score] + [b.score(b.prior(len(b.z), seed + 100 + i))["score"] for i in range(2)])


LONG_STEPS = 100


#: the distances a long curve records (DataMatch's settings): refine's default, the energy distance
#: on images' random-CNN features (else on the samples); and on the samples themselves, the energy
#: distance (the default before stop 18) and the kernel MMD (before stop 16)
CURVE_DISTANCES = {"energy": {}, "energy, pixels": {"features": None}, "mmd, pixels": {"distance": "mmd", "features": None}}


def long_curve(b: Base, seed: int, steps: int = LONG_STEPS) -> dict:
    """The default step rule (no stop) for ``steps`` steps: every 5 steps the test score and the
    distances DataMatch can use (:data:`CURVE_DISTANCES`); the step-0 raw and Platt-calibrated
    estimated gains."""
    rules = {name: DataMatch(b.real, b.g, batch_size=b.batch_size, **kw) for name, kw in CURVE_DISTANCES.items()}
    d_fake = critic_logits(b.g, b.d, b.z, b.batch_size)
    gain_cal, (a_cal, b_cal) = calibrated_gain(critic_logits(None, b.d, rules["energy"].real, b.batch_size), d_fake)
    _, traj = dgflow.refine(b.g, b.d, b.z, steps=steps, stop=None, return_trajectory=5,
                            batch_size=b.batch_size, generator_rng=seed + 4)
    checks = {}
    for i, s in enumerate(traj):  # each state decoded once for the rules' distances (the same first points)
        x = dgflow.generate(b.g, s[: rules["energy"].max_points], b.batch_size)
        checks[5 * i] = {**{name: r.distance_to(x) for name, r in rules.items()}, **b.score(s)}
    return {"steps": steps, "checks": checks, "gain_raw": estimated_gain(d_fake), "gain_calibrated": gain_cal,
            "platt": [a_cal, b_cal]}


def replay_datamatch(checks: dict, budget: int, patience: int, distance: str = "energy", tol: float = 0.0,
                     ended: bool = False) -> int | tuple[int, bool]:
    """The step DataMatch (checks every 5 steps, no step control) returns on a recorded curve with
    this budget, patience, distance and tolerance ``tol``: a check is *within* when its distance is
    at most DataMatch's bound (:func:`dgflow.data_match.within_bound` of step 0's distance, the lowest
    so far and ``tol``); the flow ends after ``patience`` checks in a row that are not, and the latest
    check within the final bound is returned. ``tol=0``: the lowest check; ``tol=1``: the latest check
    no farther from the data than the start nor than twice the lowest (the distance as a veto on
    harm; before stop 22 without the second cap). ``ended``: also return whether the
    rule ended by itself (patience) within the curve, not because the curve or budget ran out."""
    steps = [s for s in sorted(checks) if s <= budget]
    d = {s: checks[s][distance] for s in steps}
    best, since, seen, stopped = steps[0], 0, [steps[0]], False
    for step in steps[1:]:
        seen.append(step)
        if d[step] < d[best]:
            best = step
        if d[step] <= within_bound(d[steps[0]], d[best], tol):
            since = 0
        else:
            since += 1
        if since >= patience:
            stopped = True
            break
    bound = within_bound(d[steps[0]], d[best], tol)
    step = max(s for s in seen if d[s] <= bound)
    return (step, stopped) if ended else step


NOISE_SIGMAS = 2.0  # "beyond the metric's noise": more than 2 standard deviations of the base's metric


def pct(v) -> str:
    """A recovery (a fraction, or None) as the study's tables print it."""
    return "–" if v is None else f"{100 * v:.0f}%"


def recovery_summary(judged: list[dict]) -> dict:
    """Bases, how many ended worse beyond noise, and the gainable ones' recovery (of :func:`judge`'s results)."""
    rec = [x["recovery"] for x in judged if x["recovery"] is not None]
    return {"bases": len(judged), "worse_beyond_noise": sum(x["worse"] for x in judged), "gainable": len(rec),
            "mean_recovery": statistics.mean(rec) if rec else None,
            "median_recovery": statistics.median(rec) if rec else None, "worst_recovery": min(rec) if rec else None}


def judge(base: float, oracle: float, rule: float, noise: float) -> dict:
    """Recovery (where the oracle beats the base beyond the noise) and whether the rule is worse."""
    margin = NOISE_SIGMAS * noise
    return {"recovery": (base - rule) / (base - oracle) if base - oracle > margin else None,
            "worse": rule - base > margin, "rel_change": (rule - base) / base}


#: the study's recorded results (``safe_defaults.py``'s runs): dev, test, holdout and fresh; fresh2; fresh3; fresh4
STUDY_RESULTS = ("safe_defaults.json", "safe_defaults_fresh2.json", "safe_defaults_fresh3.json",
                 "safe_defaults_fresh4.json")


def study_rows() -> dict[tuple[str, str], dict]:
    """Every base the recorded study runs hold, by (half, label): its metric, noise, oracle and rules
    (a half recorded twice: its first run, the later ones reran it unchanged)."""
    rows: dict[tuple[str, str], dict] = {}
    for name in STUDY_RESULTS:
        for r in json.loads((RESULTS / name).read_text())["bases"]:
            rows.setdefault((r["half"], r["label"]), r)
    return rows


def int_keys(d: dict) -> dict:
    """A recorded curve read back from JSON, with its step keys as ints again."""
    return {int(k): v for k, v in d.items()}
