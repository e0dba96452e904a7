"""Model zoo: registry validation, local and Hub-cache resolution, sha256, errors, round trip."""
from __future__ import annotations

import pytest
import torch
import yaml

import dgflow
from dgflow import zoo
from dgflow.io import save_modules, sha256_of
from dgflow.models.arch.mlp import MLPGenerator
from zoo_testutils import isolated, saved  # noqa: F401 (fixtures)
from zoo_testutils import (COMMIT, CRIT, GEN, REPO, SMALL, fake_hub_cache, make_entry, same_outputs,
                           write_zoo)


def test_round_trip_save_register_load_refine(saved, tmp_path, monkeypatch):
    user_zoo = tmp_path / "models" / "my_zoo.yaml"
    zoo.register("mine", saved.path, zoo=user_zoo, generator=MLPGenerator, critic=CRIT,
                 generator_kwargs={"z_dim": 2, "out_dim": 2, **SMALL}, critic_kwargs={"in_dim": 2, **SMALL},
                 z_dim=2, dataset="25gaussians", convention="wgan",
                 refine={"divergence": "kl", "eta": 0.05, "gamma": 0.01, "steps": 5})
    stored = yaml.safe_load(user_zoo.read_text())["models"]["mine"]
    assert stored["weights"] == {"path": "toy.safetensors", "sha256": saved.sha256}  # relative to the yaml
    monkeypatch.chdir(tmp_path.parent)  # resolution must not depend on the working directory
    m = zoo.load("mine", zoo=user_zoo)
    assert m.name == "mine" and m.prior.shape == (2,) and m.generator.prior == m.prior
    assert m.weights_paths == (saved.path.resolve(),)
    assert same_outputs(m, saved.generator, saved.critic)
    assert not m.generator.training
    z = m.generator.sample_prior(64, generator=torch.Generator().manual_seed(0))
    # random nets: their critic is at chance, so stop=None (else refine's default leaves z unchanged)
    got = dgflow.refine(m.generator, m.critic, z, generator_rng=torch.Generator().manual_seed(3), stop=None,
                        **m.refine_kwargs)
    want = dgflow.refine(saved.generator, saved.critic, z, generator_rng=torch.Generator().manual_seed(3),
                         divergence="kl", eta=0.05, gamma=0.01, steps=5, stop=None)
    assert torch.equal(got, want) and not torch.equal(got, z)
    assert torch.equal(m.refine(z, generator_rng=torch.Generator().manual_seed(3), stop=None), want)
    with pytest.raises(zoo.ZooEntryError, match="already registered"):
        zoo.register("mine", saved.path, zoo=user_zoo, generator=GEN, critic=CRIT, z_dim=2,
                     dataset="x", convention="wgan")


def test_names_entries_and_env_var(saved, tmp_path, monkeypatch):
    a = write_zoo(tmp_path / "a.yaml", {"alpha": make_entry({"path": str(saved.path), "sha256": saved.sha256})})
    b = write_zoo(tmp_path / "b.yaml", {"beta": make_entry({"path": str(saved.path), "sha256": saved.sha256})})
    assert zoo.names() == []
    monkeypatch.setenv("DGFLOW_ZOO", str(a))
    assert zoo.names() == ["alpha"]
    assert zoo.names(zoo=b) == ["alpha", "beta"]
    assert zoo.entries(zoo=[b])["beta"]["dataset"] == "25gaussians"
    assert same_outputs(zoo.load("alpha"), saved.generator, saved.critic)


def test_unknown_name_lists_known(saved, tmp_path):
    z = write_zoo(tmp_path / "z.yaml", {"alpha": make_entry({"path": str(saved.path), "sha256": saved.sha256}),
                                        "beta": make_entry({"path": str(saved.path), "sha256": saved.sha256})})
    with pytest.raises(zoo.UnknownModelError, match=r"unknown model 'gamma'; known models: alpha, beta"):
        zoo.load("gamma", zoo=z)


@pytest.mark.parametrize("key", ["dataset", "z_dim", "generator", "generator.arch", "critic.convention",
                                 "weights", "weights.sha256"])
def test_missing_key_is_named(saved, tmp_path, key):
    entry = make_entry({"path": str(saved.path), "sha256": saved.sha256})
    parent, _, leaf = key.rpartition(".")
    del (entry[parent] if parent else entry)[leaf]
    path = write_zoo(tmp_path / "bad.yaml", {"broken": entry})
    with pytest.raises(zoo.ZooEntryError) as err:
        zoo.names(zoo=path)
    msg = str(err.value)
    assert f"missing key '{key}'" in msg and "'broken'" in msg and str(path) in msg


@pytest.mark.parametrize("change, message", [
    ({"refine": {"etta": 0.1}}, "'refine.etta' is not a keyword argument"),
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"z_dim": 0}, "'z_dim' must be a positive int"),
    ({"critic": {"arch": CRIT, "convention": "softmax"}}, "'critic.convention' is 'softmax'"),
    ({"generator": {"arch": "no_colon"}}, "'generator.arch' must be an importable"),
    ({"weights": {"sha256": "0" * 64}}, "missing key 'weights.path'"),
    ({"weights": {"sha256": "0" * 64, "repo_id": REPO, "filename": "f.safetensors"}},
     "missing key 'weights.revision'"),
    ({"weights": {"sha256": "abc", "path": "x"}}, "'weights.sha256' must be 64 hex"),
    ({"weights": [{"sha256": "0" * 64, "path": "a"}, {"sha256": "0" * 64, "path": "b"}]},
     "'generator' exactly once"),
])
def test_invalid_entries_are_refused(tmp_path, change, message):
    entry = make_entry({"path": "w.safetensors", "sha256": "0" * 64})
    entry.update(change)
    with pytest.raises(zoo.ZooEntryError, match=message.replace("(", r"\(").replace(".", r"\.")):
        zoo.names(zoo={"models": {"m": entry}})


def test_sha256_mismatch_is_refused_and_names_the_file(saved, tmp_path):
    wrong = "f" * 64
    z = write_zoo(tmp_path / "z.yaml", {"m": make_entry({"path": str(saved.path), "sha256": wrong})})
    with pytest.raises(zoo.ChecksumError, match=f"sha256 mismatch for weights file {saved.path}"):
        zoo.load("m", zoo=z)
    z = write_zoo(tmp_path / "z.yaml", {"m": make_entry({"path": str(saved.path), "sha256": saved.sha256})})
    with open(saved.path, "ab") as fh:  # a corrupted copy of the registered file
        fh.write(b"\0")
    with pytest.raises(zoo.ChecksumError, match=f"expected {saved.sha256}"):
        zoo.load("m", zoo=z)


def test_missing_local_file_without_hub_location(tmp_path):
    z = write_zoo(tmp_path / "z.yaml", {"m": make_entry({"path": "gone.safetensors", "sha256": "0" * 64})})
    with pytest.raises(zoo.WeightsNotAvailableError, match=f"not found at {tmp_path / 'gone.safetensors'}"):
        zoo.load("m", zoo=z)


def test_only_safetensors_are_loaded(saved, tmp_path):
    pt = tmp_path / "toy.pt"
    torch.save({"generator." + k: v for k, v in saved.generator.state_dict().items()}, pt)
    z = write_zoo(tmp_path / "z.yaml", {"m": make_entry({"path": str(pt), "sha256": sha256_of(pt)})})
    with pytest.raises(zoo.ZooEntryError, match="not a .safetensors file"):
        zoo.load("m", zoo=z)


def test_architecture_mismatch_is_reported(saved, tmp_path):
    entry = make_entry({"path": str(saved.path), "sha256": saved.sha256})
    entry["critic"]["kwargs"]["width"] = 16
    with pytest.raises(zoo.ZooEntryError, match="does not fit the registered architectures"):
        zoo.load("m", zoo={"models": {"m": entry}})


def test_convention_temperature_and_separate_files(saved, tmp_path):
    gp, dp = tmp_path / "g.safetensors", tmp_path / "d.safetensors"
    save_modules(gp, {"generator": saved.generator})
    save_modules(dp, {"critic": saved.critic})
    entry = make_entry([{"path": str(gp), "sha256": sha256_of(gp), "modules": ["generator"]},
                        {"path": str(dp), "sha256": sha256_of(dp), "modules": ["critic"]}])
    entry["critic"].update(convention="neg", temperature=2.0)
    m = zoo.load("m", zoo={"models": {"m": entry}})
    x = torch.randn(8, 2)
    with torch.no_grad():
        assert torch.allclose(m.critic(x), -saved.critic(x) / 2.0)
        assert torch.equal(m.generator(x), saved.generator(x))


# ------------------------------------------------------------------ Hugging Face Hub cache (offline)
def _hub_entry(saved, revision=COMMIT, path="absent/toy.safetensors"):
    return make_entry({"path": path, "repo_id": REPO, "filename": "toy.safetensors",
                       "revision": revision, "sha256": saved.sha256})


def test_load_resolves_pinned_commit_from_hub_cache(saved, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    snap = fake_hub_cache(cache, saved.path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    z = write_zoo(tmp_path / "z.yaml", {"hubbed": _hub_entry(saved)})
    m = zoo.load("hubbed", zoo=z, cache_dir=cache)
    assert m.weights_paths == (snap,) and same_outputs(m, saved.generator, saved.critic)
    assert zoo.availability(zoo.weight_files(zoo.load_registry(z), "hubbed")[0], cache) == "cached"


def test_load_resolves_branch_through_refs_under_hf_home(saved, tmp_path, monkeypatch):
    fake_hub_cache(tmp_path / "hf_home" / "hub", saved.path)  # HF_HOME is set by the isolated fixture
    z = write_zoo(tmp_path / "z.yaml", {"hubbed": _hub_entry(saved, revision="main")})
    m = zoo.load("hubbed", zoo=z, local_files_only=True)
    assert same_outputs(m, saved.generator, saved.critic)


def test_local_path_wins_over_hub(saved, tmp_path):
    z = write_zoo(tmp_path / "z.yaml", {"both": _hub_entry(saved, path=str(saved.path))})
    assert zoo.load("both", zoo=z, local_files_only=True).weights_paths == (saved.path,)


def test_offline_and_not_cached_says_how_to_fetch(saved, tmp_path, monkeypatch):
    fake_hub_cache(tmp_path / "cache", saved.path)
    other = "f" * 40  # a revision that is not in the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    z = write_zoo(tmp_path / "z.yaml", {"hubbed": _hub_entry(saved, revision=other)})
    with pytest.raises(zoo.WeightsNotAvailableError) as err:
        zoo.load("hubbed", zoo=z, cache_dir=tmp_path / "cache")
    msg = str(err.value)
    for part in (REPO, "toy.safetensors", other, "HF_HUB_OFFLINE=1", "dgflow zoo download hubbed",
                 f"hf download {REPO} toy.safetensors --revision {other}", str(tmp_path / "cache")):
        assert part in msg, part


def test_corrupt_hub_cache_file_is_refused(saved, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(saved.path.read_bytes() + b"\0")
    snap = fake_hub_cache(tmp_path / "cache", bad)
    z = write_zoo(tmp_path / "z.yaml", {"hubbed": _hub_entry(saved)})
    with pytest.raises(zoo.ChecksumError, match=f"{snap} \\(cached from {REPO}@{COMMIT}\\)"):
        zoo.load("hubbed", zoo=z, cache_dir=tmp_path / "cache", local_files_only=True)


def test_packaged_zoo_is_valid(monkeypatch):
    from dgflow.zoo import registry

    monkeypatch.setattr(registry, "PACKAGED_ZOO", zoo.PACKAGED_ZOO)
    reg = zoo.load_registry()
    assert "toy2d-25gaussians-wgangp" in reg.entries
    for name, entry in reg.entries.items():
        assert entry.get("refine"), f"{name}: packaged entries carry recommended refine settings"
    wf = zoo.weight_files(reg, "toy2d-25gaussians-wgangp")[0]
    if not wf.path.is_file():
        pytest.skip(f"{wf.path} not built yet")
    m = zoo.load("toy2d-25gaussians-wgangp", local_files_only=True)
    assert m.generator(m.generator.sample_prior(4)).shape == (4, 2)
