"""The Glow, MMD-GAN and SN-ResNet-GAN bases: architectures, the resumable training script, and the
project zoo (top-level model_zoo.yaml, every shipped weights file registered)."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dgflow import zoo
from dgflow.data import fmnist
from dgflow.io import load_tensors, sha256_of
from dgflow.models.arch import MMDFeatureCritic, ResNetGenerator, SNResNetDiscriminator, bits_per_dim, mix_rbf_mmd2
from dgflow.zoo import registry

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:torch.lu is deprecated")


# ----------------------------------------------------------------------------- architectures
def test_glow_levels_and_logit_transform():
    pytest.importorskip("normflows")
    from dgflow.models.arch import glow, glow_generator

    g = glow_generator(levels=3, blocks=1, hidden=4)
    assert g.level_shapes == ((16, 4, 4), (4, 8, 8), (2, 16, 16)) and g.z_dim == 1024
    transform = glow(img_size=8, levels=1, blocks=1, hidden=4).transform
    z = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    x, log_det = transform(z)
    jac = torch.autograd.functional.jacobian(lambda v: transform(v.view(1, 1, 2, 2))[0].flatten(), z.flatten())
    assert float(log_det) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-10)
    z_back, inv_log_det = transform.inverse(x)
    torch.testing.assert_close(z_back, z)
    assert float(inv_log_det) == pytest.approx(-float(log_det))
    with pytest.raises(ValueError, match="img_size - 2 pad = 12 must be divisible by 2\\*\\*levels=8"):
        glow(img_size=12, levels=3)
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        glow(hidden=0)


def test_glow_constant_border_is_not_modelled():
    """pad=2: the flow is over the 28x28 interior; samples get an exact -1 border, encode ignores it."""
    pytest.importorskip("normflows")
    from dgflow.models.arch import glow_generator
    from dgflow.models.flows import initialize_actnorm

    torch.manual_seed(0)
    g = glow_generator(levels=2, blocks=1, hidden=4, pad=2)
    assert g.level_shapes == ((8, 7, 7), (2, 14, 14)) and g.z_dim == 784
    x = torch.nn.functional.pad(torch.rand(8, 1, 28, 28) * 1.6 - 0.8, (2,) * 4, value=-1.0)
    initialize_actnorm(g.flow, x)
    y = g(g.encode(x))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
    assert bool((g(torch.randn(3, 784))[..., :2, :] == -1).all())


def test_bits_per_dim():
    assert float(bits_per_dim(torch.tensor(0.0), 10)) == pytest.approx(7.0)   # 256 levels over [-1, 1]
    assert float(bits_per_dim(torch.tensor(10 * math.log(2)), 10)) == pytest.approx(8.0)


def test_resnet_and_mmd_shapes():
    g, d = ResNetGenerator(z_dim=8), SNResNetDiscriminator()
    x = g(torch.randn(3, 8))
    assert x.shape == (3, 1, 32, 32) and float(x.detach().abs().max()) <= 1 and d(x).shape == (3,)
    assert MMDFeatureCritic(features=5)(x).shape == (3, 5)
    with pytest.raises(ValueError, match="features must be an int >= 2"):
        MMDFeatureCritic(features=1)


def test_mix_rbf_mmd2_matches_definition():
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64) + 1
    k = lambda a, b: sum(math.exp(-float((a - b).pow(2).sum()) / (2 * s * s)) for s in (1.0, 2.0))  # noqa: E731
    mean = lambda u, v, skip: np.mean([k(a, b) for i, a in enumerate(u) for j, b in enumerate(v)  # noqa: E731
                                       if not (skip and i == j)])
    unbiased = mean(x, x, True) + mean(y, y, True) - 2 * mean(x, y, False)
    assert float(mix_rbf_mmd2(x, y, (1.0, 2.0))) == pytest.approx(unbiased)
    assert float(mix_rbf_mmd2(x, x, biased=True)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="fx and fy must be"):
        mix_rbf_mmd2(x, y[:, :2])


# ----------------------------------------------------------------------------- training script
@pytest.fixture(scope="module")
def train_script():
    spec = importlib.util.spec_from_file_location("train_fmnist_base", ROOT / "benchmarks" / "train_fmnist_base.py")
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))   # `import benchlib`, as when run as a script
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 6)):
        fmnist.write_idx(root / fmnist.FILES[split][0], rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        fmnist.write_idx(root / fmnist.FILES[split][1], rng.integers(0, 10, n, dtype=np.uint8))
    return root


@pytest.mark.parametrize("base", ["glow", "mmdgan", "snresnet"])
def test_training_resumes_to_the_same_weights(train_script, tiny_data, tmp_path, base):
    if base == "glow":
        pytest.importorskip("normflows")

    def run(tag, *extra):
        argv = ["--base", base, "--iters", "3", "--batch-size", "4", "--ckpt-every", "2", "--log-every", "1",
                "--data-dir", str(tiny_data), "--ckpt-dir", str(tmp_path / tag), "--out", str(tmp_path / f"{tag}.safetensors"),
                "--results", str(tmp_path / f"{tag}.json"), "--log", str(tmp_path / f"{tag}.csv"), *extra]
        assert train_script.main(argv) == 0

    small = ["--arch", json.dumps({"glow": {"blocks": 1, "hidden": 4}, "mmdgan": {"features": 4},
                                   "snresnet": {"z_dim": 8}}[base])]
    run("straight", *small)
    run("resumed", "--stop-after", "1", *small)
    assert not (tmp_path / "resumed.safetensors").exists() and (tmp_path / "resumed" / "last.pt").is_file()
    with pytest.raises(SystemExit, match="belongs to another run"):
        run("resumed")                            # the default architecture is another run
    run("resumed", *small)
    a, b = load_tensors(tmp_path / "straight.safetensors"), load_tensors(tmp_path / "resumed.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((tmp_path / f"{t}.json").read_text()) for t in ("straight", "resumed"))
    assert ra["final_losses_mean_last_10_logged"] == rb["final_losses_mean_last_10_logged"]
    logs = [list(csv.DictReader(open(tmp_path / f"{t}.csv", newline=""))) for t in ("straight", "resumed")]
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert [int(r["iter"]) for r in logs[0]] == [1, 2, 3] and strip(logs[0]) == strip(logs[1])
    if base == "glow":
        assert np.isfinite(ra["test_bits_per_dim"]) and set(a) and all(k.startswith("generator.flow.") for k in a)


# ----------------------------------------------------------------------------- project zoo
def test_zoo_file_found_in_checkout_and_wheel_layouts(tmp_path):
    checkout, wheel = tmp_path / "checkout", tmp_path / "site-packages"
    for d in (checkout / "dgflow", wheel / "dgflow"):
        d.mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    (checkout / "model_zoo.yaml").write_text("")
    (wheel / "dgflow" / "model_zoo.yaml").write_text("")
    assert registry.project_zoo_path(checkout / "dgflow") == checkout / "model_zoo.yaml"
    assert registry.project_zoo_path(wheel / "dgflow") == wheel / "dgflow" / "model_zoo.yaml"
    assert registry.zoo_base_dir(registry.PACKAGE_DIR / "model_zoo.yaml") == registry.PACKAGE_DIR.parent
    assert registry.zoo_base_dir(tmp_path / "mine.yaml") == tmp_path
    assert registry.PACKAGED_ZOO == ROOT / "model_zoo.yaml"      # this checkout: the top-level file
    assert not (ROOT / "dgflow" / "model_zoo.yaml").exists()      # one source of truth


def test_every_shipped_weights_file_is_registered():
    reg = registry.load_registry(registry.PACKAGED_ZOO)
    registered = {wf.path.resolve(): wf.sha256 for name in reg.entries for wf in zoo.weight_files(reg, name)}
    shipped = set((ROOT / "dgflow" / "weights").glob("*.safetensors")) - {ROOT / "dgflow" / "weights" / "fmnist_cnn.safetensors"}
    assert shipped <= set(registered), f"unregistered: {sorted(p.name for p in shipped - set(registered))}"
    assert all(sha256_of(p) == registered[p] for p in shipped)


def test_snresnet_is_refined_with_the_sndcgan_discriminator():
    """The critic need not belong to the generator: fmnist-snresnet's critic is fmnist-sndcgan's."""
    if "fmnist-snresnet" not in zoo.names(registry.PACKAGED_ZOO):
        pytest.skip("fmnist-snresnet is not registered yet")
    res, sn = zoo.load("fmnist-snresnet"), zoo.load("fmnist-sndcgan")
    assert isinstance(res.generator.module, ResNetGenerator)
    x = res.generator(res.generator.sample_prior(4, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        assert torch.equal(res.critic(x), sn.critic(x))
    assert any(p.name == "fmnist_sndcgan.safetensors" for p in res.weights_paths)


@pytest.mark.parametrize("name", ["fmnist-vae", "fmnist-glow", "fmnist-mmdgan", "fmnist-snresnet"])
def test_new_bases_load_and_refine(name):
    if name not in zoo.names(registry.PACKAGED_ZOO):
        pytest.skip(f"{name} is not registered yet")
    if name == "fmnist-glow":
        pytest.importorskip("normflows")
    import dgflow

    m = zoo.load(name)
    z = m.generator.sample_prior(3, generator=torch.Generator().manual_seed(0))
    x = dgflow.generate(m.generator, z)
    assert x.shape == (3, 1, 32, 32) and torch.isfinite(x).all()
    assert m.critic(x).shape == (3,)
    assert dgflow.refine(m.generator, m.critic, z, steps=1).shape == z.shape


def test_every_base_of_the_safe_defaults_split_is_in_the_repository():
    # the study's halves are declared before their bases are trained: each must be committed, and
    # a half of the split file that the study's HALVES did not list would be skipped by --split all
    import sys

    import yaml

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from benchlib import BASES_DIR
        from benchlib.safe import HALVES, SPLIT_FILE, jobs_of
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert tuple(yaml.safe_load(SPLIT_FILE.read_text())) == HALVES
    jobs = jobs_of("all")
    assert len(jobs) == len({j["label"] for j in jobs}) >= 24  # one label a base
    for j in jobs:
        if j["kind"] == "2d":
            assert Path(j["path"]).is_file(), j["label"]
        elif j["model"].endswith(".safetensors"):
            assert (BASES_DIR / j["model"]).is_file(), j["label"]
        else:
            assert j["model"] in registry.names(), j["label"]
    assert [j["half"] for j in jobs_of(["fresh2", "dev"])][0] == "dev"  # in the split file's order
