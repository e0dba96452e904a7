"""The one step loop behind :func:`dgflow.refine` and the flow-type baselines (DDLS, DOT).

Every method moves a batch of latents step by step using the critic's logits and their
gradient. What is common lives here, once: the chunked forward/backward pass, the finite checks
of the logits, gradients and updated latents, the callback, the stop rule, the progress bar, the
trajectory and the record of what was done (:class:`RunInfo`). A method supplies only its update
(:class:`Update`): how the next state follows from the current one, its logits and gradient.
"""
from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import torch
from tqdm.auto import tqdm

from ._checks import check_int
from .models.modules import frozen
from .passes import all_finite, check_finite, check_state, chunk_slices, chunked_logits_and_grad

logger = logging.getLogger("dgflow")

Model = Callable[[torch.Tensor], torch.Tensor]
Callback = Callable[..., None]
#: a stop rule: ``stop(step, z, logits) -> bool``. One that compares decoded samples may also have
#: ``samples_wanted(step, generator) -> int``: the engine then passes, as ``samples=``, the first that
#: many samples its own pass decoded from ``z`` with ``generator`` at that step (models in eval mode),
#: so nothing is decoded twice; the rule answers 0 where it would decode otherwise (another generator).
Stop = Callable[[int, torch.Tensor, torch.Tensor], bool]


class Update(Protocol):
    """A method's step: ``start`` sees the first step's logits and gradient once (and returns the
    parameters it resolved from them, for :class:`RunInfo`), ``__call__`` returns the next state
    without modifying ``state`` in place."""

    name: str
    hint: str  # appended to the error when an update leaves non-finite latents

    def start(self, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> dict: ...

    def __call__(self, step: int, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor
                 ) -> torch.Tensor: ...

    # Optional: ``rescale(factor)`` multiplies the step size from the next step on; an update that has
    # it can be steered by a stop rule with a ``steer`` method (:func:`take_steer`).


@dataclass
class RunInfo:
    """What a run did: returned by ``refine(..., return_info=True)`` (and DDLS/DOT).

    Attributes:
        method: the update's name (``"euler"``, ``"dopri5"``, ``"ddls"``, ``"dot"``).
        steps: the step budget asked for.
        steps_run: updates applied (``steps`` unless a stop rule fired earlier).
        stop_step: the step whose state is returned when a stop rule ended the flow early: the
            step at which ``stop`` returned True (the state before that step's update), or the
            step a rule with a ``finish`` method chose (:class:`dgflow.stopping.DataMatch`: its
            best check); ``None`` if the budget ended the flow at its last state. Under a rule
            that steers the step (DataMatch) a step is a gradient pass, not a unit of flow time.
        stop_reason: why the flow ended where it did, in words.
        stop_rule: the stop rule's settings and findings (its ``as_dict()``, e.g. DataMatch's
            distance and the critic's calibrated gain), or ``{}``.
        params: what the method resolved at the first step, e.g. ``eta`` and the drift cap
            ``cap`` of refine, ``k_eff`` of DOT.
        history: per-step diagnostics (:func:`step_stats` and ``step``), one dict per update.
        seconds: wall time of the run (passes, updates, callback and stop rule; with
            :func:`dgflow.refine`'s own rule, its setup too).
        stop_seconds: the part of ``seconds`` spent in the stop rule (its setup, calls and
            ``finish``): :attr:`stop_overhead` relates it to the rest.
    """

    method: str
    steps: int
    steps_run: int = 0
    stop_step: Optional[int] = None
    stop_reason: str = ""
    stop_rule: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    stop_seconds: float = 0.0

    @property
    def stop_overhead(self) -> float:
        """The stop rule's wall time relative to the rest of the run (0.05: it added 5%), both
        measured in this run; 0 for a run without a rule or of no time."""
        rest = self.seconds - self.stop_seconds
        return self.stop_seconds / rest if rest > 0 else 0.0

    @property
    def eta(self) -> Optional[float]:
        return self.params.get("eta")

    @property
    def cap(self) -> Optional[float]:
        return self.params.get("cap")

    def as_dict(self) -> dict:
        return {"method": self.method, "steps": self.steps, "steps_run": self.steps_run,
                "stop_step": self.stop_step, "stop_reason": self.stop_reason, "stop_rule": dict(self.stop_rule),
                "params": dict(self.params), "history": list(self.history), "seconds": self.seconds,
                "stop_seconds": self.stop_seconds}


def step_stats(z: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor,
               delta: torch.Tensor | None = None) -> dict[str, float]:
    """Diagnostics of one step: logit mean/std, median |grad d|, mean step length, ||z||/sqrt(dim)."""
    gn = grad.flatten(1).norm(dim=1)
    out = {"d_mean": float(logits.mean()), "d_std": float(logits.std()) if len(logits) > 1 else 0.0,
           "grad_median": float(gn.median()),
           "z_radius": float(z.flatten(1).norm(dim=1).mean() / math.sqrt(z[0].numel()))}
    if delta is not None:
        out["step_mean"] = float(delta.flatten(1).norm(dim=1).mean())
    return out


def record_steps(steps: int, every: int) -> list[int]:
    """The steps ``refine(..., steps=steps, return_trajectory=every)`` records: 0, every, ..., steps."""
    return sorted(set(range(0, steps + 1, every)) | {steps})


def trajectory_every(return_trajectory: bool | int) -> int:
    """0 (no trajectory), or the spacing of the recorded steps."""
    if return_trajectory is False:
        return 0
    return 1 if return_trajectory is True else check_int(return_trajectory, "return_trajectory", 1)


def make_callback(callback: Callback | None) -> Callable[..., None] | None:
    """``callback`` as ``cb(step, z, logits, grad)``: the grad is passed as ``grad=`` only if it takes it."""
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable (step, z, logits) or None, got {type(callback).__name__}")
    try:
        params = inspect.signature(callback).parameters.values()
        takes_grad = any(p.name == "grad" or p.kind == p.VAR_KEYWORD for p in params)
    except (TypeError, ValueError):  # builtins without a signature
        takes_grad = False
    if takes_grad:
        return lambda step, z, d, g: callback(step, z, d, grad=g)
    return lambda step, z, d, g: callback(step, z, d)


def check_stop(stop: object) -> Stop | None:
    if stop is not None and not callable(stop):
        raise TypeError(f"stop must be callable (step, z, logits) -> bool or None, got {type(stop).__name__}")
    return stop


def run(update: Update, generator: Optional[Model], critic: Model, z: torch.Tensor, steps: int, *,
        batch_size: int | None = None, callback: Callback | None = None, stop: Stop | None = None,
        every: int = 0, progress: bool = False, eval_mode: bool = True, diagnostics: bool = False
        ) -> tuple[torch.Tensor, list[torch.Tensor], RunInfo]:
    """Run ``update`` for ``steps`` steps from ``z``, models frozen; returns (state, trajectory, info).

    Arguments are checked by the caller. ``every`` > 0 records the states at
    :func:`record_steps` (and the last one if ``stop`` ends the run early); ``diagnostics``
    fills ``info.history`` (also computed for the progress bar).
    """
    cb = make_callback(callback)
    check_steerable(stop, update)
    state = z.detach().clone()
    record = record_steps(steps, every) if every else []
    traj = [state.clone()] if 0 in record else []
    info = RunInfo(update.name, steps)
    if len(state) == 0:  # nothing to move: the (empty) batch comes back as it is
        return state, [state.clone() for _ in record], info
    chunks = chunk_slices(len(state), batch_size)
    timed_stop = _timed(stop, info)
    t0 = time.perf_counter()
    with frozen(generator, critic, eval_mode=eval_mode):
        bar = tqdm(range(steps), disable=not progress, desc=f"dgflow {update.name}", leave=False)
        steering = bool(getattr(stop, "steers", False))
        wanted = getattr(stop, "samples_wanted", None) if eval_mode else None  # else its decode differs
        for step in bar:
            keep = int(wanted(step, generator)) if callable(wanted) else 0
            logits, grad, samples = chunked_logits_and_grad(generator, critic, state, chunks, keep)
            if not all_finite(logits, grad):
                if steering and step > 0:  # too long a step: the rule goes back
                    back = _reject(stop, update, step, info)
                    if back is None:
                        break
                    state = _went_back(back, step, record, traj)
                    continue
                check_finite(step, logits, grad)  # raises, naming the step
            if step == 0:
                info.params.update(update.start(state, logits, grad))
            if cb is not None:
                cb(step, state, logits, grad)
            if timed_stop is not None and timed_stop(step, state, logits, samples):
                logger.info("dgflow: stop rule ended the flow at step %d", step)
                info.stop_step = step
                if record and step not in record:  # the last state belongs to the trajectory
                    traj.append(state.clone())
                break
            back = take_steer(stop, update)
            if back is not None:  # the rule sent the flow back to an earlier state: its logits next step
                state = _went_back(back, step, record, traj)
                continue
            new = update(step, state, logits, grad)
            if not all_finite(new):
                if steering:
                    back = _reject(stop, update, step + 1, info)
                    if back is None:
                        info.steps_run = step + 1
                        break
                    state = _went_back(back, step, record, traj)
                    continue
                check_state(step, new, update.hint)  # raises
            if diagnostics or progress:
                stats = step_stats(state, logits, grad, new - state)
                bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items()})
                if diagnostics:
                    info.history.append({"step": step, **stats})
            state = new
            info.steps_run = step + 1
            if step + 1 in record:
                traj.append(state.clone())
        bar.close()
        t_finish = time.perf_counter()
        state = finish_stop(stop, state, info)
        if stop is not None:
            info.stop_seconds += time.perf_counter() - t_finish
    info.seconds = time.perf_counter() - t0
    return state, traj, info


def take_steer(stop: Stop | None, update: Update) -> torch.Tensor | None:
    """Apply what a steering stop rule asks for after its call: ``stop.steer()`` returns ``None``
    (go on), or ``(state, factor)``: multiply the update's step size by ``factor``
    (``update.rescale``) and, unless ``state`` is ``None``, continue from ``state`` (returned) instead
    of updating the current one. A rewind costs the step's pass: ``steps`` counts the passes."""
    steer = getattr(stop, "steer", None)
    move = steer() if callable(steer) else None
    if move is None:
        return None
    state, factor = move
    update.rescale(factor)  # checked by check_steerable before the run
    return None if state is None else state.detach().clone()


def _went_back(state: torch.Tensor, step: int, record: list[int], traj: list[torch.Tensor]) -> torch.Tensor:
    """The state a steering rule sent the flow back to at ``step``: the state of step + 1 (recorded)."""
    if step + 1 in record:
        traj.append(state.clone())
    return state


def _reject(stop, update: Update, step: int, info: RunInfo) -> torch.Tensor | None:
    """A steering rule's answer to a non-finite state at ``step``: the state to go back to, or
    ``None`` if that ends the flow (``info.stop_step`` set; the rule's ``finish`` picks the state)."""
    t = time.perf_counter()
    try:
        if stop.reject(step):
            logger.info("dgflow: non-finite state at step %d ended the steered flow", step)
            info.stop_step = step
            return None
        return take_steer(stop, update)
    finally:
        info.stop_seconds += time.perf_counter() - t


def check_steerable(stop: Stop | None, update: Update) -> None:
    """A stop rule that steers (its ``steers`` is true) needs an update with ``rescale``."""
    if getattr(stop, "steers", False) and not callable(getattr(update, "rescale", None)):
        raise TypeError(f"stop: {type(stop).__name__} steers the step size, which the {update.name!r} update "
                        "cannot change; turn its steering off (DataMatch: adapt_step=False)")


def _timed(stop: Stop | None, info: RunInfo
           ) -> Callable[[int, torch.Tensor, torch.Tensor, Optional[torch.Tensor]], bool] | None:
    """``stop`` as a predicate returning a bool that adds its wall time to ``info.stop_seconds``; the
    pass's decoded samples go to it as ``samples=`` when there are any (it asked for them)."""
    if stop is None:
        return None

    def call(step: int, state: torch.Tensor, logits: torch.Tensor, samples: Optional[torch.Tensor]) -> bool:
        t = time.perf_counter()
        try:
            if samples is None:
                return bool(stop(step, state, logits))
            return bool(stop(step, state, logits, samples=samples))
        finally:
            info.stop_seconds += time.perf_counter() - t
    return call


def finish_stop(stop: Stop | None, state: torch.Tensor, info: RunInfo) -> torch.Tensor:
    """The state to return once the loop has ended, and ``info``'s stop fields: a rule with a
    ``finish(step, state) -> (step, state)`` method chooses (e.g. its best check), else the last state."""
    end = info.steps_run if info.stop_step is None else info.stop_step
    finish = getattr(stop, "finish", None)
    if callable(finish):
        chosen, state = finish(end, state)
        info.stop_step = None if chosen == info.steps else chosen
        end = chosen
    as_dict = getattr(stop, "as_dict", None)
    if callable(as_dict):
        info.stop_rule = dict(as_dict())
    reason = getattr(stop, "reason", None)
    if isinstance(reason, str):
        info.stop_reason = reason
    elif info.stop_step is not None:
        info.stop_reason = f"the stop rule ended the flow at step {end}"
    else:
        info.stop_reason = f"ran the budget of {info.steps} steps"
    return state
