"""AtChance's end-of-budget test (refine's no-data default): the start comes back when the batch's
mean logit has risen twice the estimated gain (as far past the critic's estimate of real data's as it
started short of it) while that gain has not fallen."""
import pytest
import torch

import dgflow
from dgflow.stopping import MAX_GAIN_RATIO, AtChance, estimated_gain


def gaussian_shift(m):
    """The exact log ratio of N((m, 0), I) over N(0, I): linear, so a translated batch keeps its gain."""
    return lambda x: m * x[:, 0] - m * m / 2


def batch(n=4000, dim=2, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_the_start_comes_back_only_once_the_batch_has_overshot_the_data_without_a_falling_gain():
    m, z = 0.3, batch()  # gain ~ m^2 = 0.09 nats; the default step moves the median sample 0.02 a step
    kw = dict(gamma=0.0, generator_rng=0, return_info=True)
    for steps in (5, 15, 25):  # 0.1, 0.3 (the data's mean), 0.5 of the way 0.3: short of a 2m overshoot
        out, info = dgflow.refine(None, gaussian_shift(m), z, steps=steps, **kw)
        assert not torch.equal(out, z) and info.stop_step is None
        r = info.stop_rule
        assert r["end_gain"] == pytest.approx(r["gain"], rel=1e-3)  # a translation leaves the gain as it was
        assert r["end_mean_logit"] < r["mean_logit"] + 2 * r["gain"]
        assert torch.equal(out, dgflow.refine(None, gaussian_shift(m), z, steps=steps, stop=None, **kw)[0])
    assert r["end_mean_logit"] > r["mean_logit"] + r["gain"]  # past the data's mean logit, and kept
    # a convex critic: the gain grows as the batch climbs it; 40 steps (0.8) overshoot by more than 2m
    convex = lambda x: gaussian_shift(m)(x) + 0.05 * x[:, 0] ** 2  # noqa: E731
    out, info = dgflow.refine(None, convex, z, steps=40, **kw)
    assert torch.equal(out, z) and info.stop_step == 0 and info.steps_run == 40
    r = info.stop_rule
    assert r["end_mean_logit"] >= r["mean_logit"] + 2 * r["gain"] and r["end_gain"] >= r["gain"]
    assert "contradicts itself" in info.stop_reason
    out, info = dgflow.refine(None, convex, z, steps=5, **kw)  # short of it: kept
    assert not torch.equal(out, z) and info.stop_step is None and info.stop_rule["end_gain"] > r["gain"] * 0.9


def test_a_flow_that_the_critic_sees_converging_is_kept():
    # data N(1, 0.5^2) on the first axis: d = log mu/rho is concave there, so the batch's logits
    # contract as it moves towards the data and the gain falls
    z = batch()
    critic = lambda x: -2 * (x[:, 0] - 1) ** 2 + x[:, 0] ** 2 / 2 + 0.6931  # noqa: E731
    out, info = dgflow.refine(None, critic, z, steps=40, gamma=0.0, generator_rng=0, return_info=True)
    assert info.stop_step is None and info.stop_rule["end_gain"] < info.stop_rule["gain"]
    assert float(out[:, 0].mean()) > float(z[:, 0].mean()) + 0.3
    assert "at the end" in info.stop_reason and "contradicts" not in info.stop_reason


def test_images_are_not_end_tested():
    z = batch(500, 64, seed=1)
    image = lambda v: v.view(-1, 1, 8, 8)  # noqa: E731
    critic = lambda x: 0.3 * x.mean((1, 2, 3)) * 8  # noqa: E731  (linear: it would be vetoed on points)
    out, info = dgflow.refine(image, critic, z, steps=40, gamma=0.0, generator_rng=0, return_info=True)
    assert not torch.equal(out, z) and info.stop_step is None and info.stop_rule["end_gain"] is None
    flat = dgflow.refine(None, lambda v: critic(image(v)), z, steps=40, gamma=0.0, generator_rng=0,
                         return_info=True)[1]  # the same flow on the latents themselves: tested
    assert flat.stop_rule["end_gain"] is not None


def test_the_rule_alone_is_a_plain_predicate_and_its_arguments_are_checked():
    rule = AtChance()
    assert not rule.end_test and rule.max_gain_ratio == MAX_GAIN_RATIO
    z = batch()
    out, info = dgflow.refine(None, gaussian_shift(0.3), z, steps=40, gamma=0.0, generator_rng=0, stop=rule,
                              return_info=True)
    assert not torch.equal(out, z) and info.stop_rule["end_gain"] is None
    assert not AtChance(critic=gaussian_shift(0.3), max_gain_ratio=None).end_test
    with pytest.raises(ValueError, match="max_gain_ratio"):
        AtChance(max_gain_ratio=0.0)
    with pytest.raises(TypeError, match="critic"):
        AtChance(critic=3)


def test_the_end_test_reads_the_last_state_and_a_higher_ratio_keeps_it():
    z = batch()
    convex = lambda x: gaussian_shift(0.3)(x) + 0.05 * x[:, 0] ** 2  # noqa: E731
    kw = dict(steps=40, gamma=0.0, generator_rng=0)
    moved = dgflow.refine(None, convex, z, stop=None, **kw)
    rule = AtChance(critic=convex)
    assert torch.equal(dgflow.refine(None, convex, z, stop=rule, **kw), z)
    assert rule.end_gain == pytest.approx(estimated_gain(convex(moved)), rel=1e-6)
    assert rule.end_mean == pytest.approx(float(convex(moved).double().mean()), rel=1e-6)
    lenient = AtChance(critic=convex, max_gain_ratio=rule.end_gain / rule.gain * 1.01)
    assert torch.equal(dgflow.refine(None, convex, z, stop=lenient, **kw), moved)
