"""`dgflow fit-critic` on image bases: tiny zoo models and a tiny fake Fashion-MNIST directory."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dgflow import zoo
from dgflow.calibration import calibration_report
from dgflow.cli import build_parser, main
from dgflow.commands import fit_critic as cmd
from dgflow.data import fmnist
from dgflow.io import save_modules, sha256_of
from dgflow.models.arch import DCGANGenerator, SNDCGANDiscriminator
from zoo_testutils import isolated  # noqa: F401 (fixture: no packaged zoo, no network)
from zoo_testutils import make_entry, saved, write_zoo  # noqa: F401

GEN = {"arch": "dgflow.models.arch.dcgan:DCGANGenerator", "kwargs": {"z_dim": 4, "channels": [8], "bottom": 16}}
CRIT = {"arch": "dgflow.models.arch.dcgan:SNDCGANDiscriminator", "kwargs": {"channels": [8], "img_size": 32}}


@pytest.fixture
def setup(tmp_path, saved):  # noqa: F811
    """A zoo with a tiny 32x32 GAN ``tiny``, another one ``tiny-d0`` (its critic is D0), a 2D toy
    ``toy``, and 60 random 'Fashion-MNIST' train images."""
    torch.manual_seed(0)
    files = {}
    for name in ("tiny", "tiny-d0"):
        g, d = DCGANGenerator(**GEN["kwargs"]), SNDCGANDiscriminator(**CRIT["kwargs"])
        files[name] = tmp_path / f"{name}.safetensors"
        save_modules(files[name], {"generator": g, "critic": d})
    entry = lambda f: {"dataset": "fmnist", "z_dim": 4, "generator": GEN, "critic": {**CRIT, "convention": "ns"},  # noqa: E731
                       "weights": {"path": str(f), "sha256": sha256_of(f)}}
    zoo_file = write_zoo(tmp_path / "zoo.yaml", {
        "tiny": entry(files["tiny"]), "tiny-d0": entry(files["tiny-d0"]),
        "toy": make_entry({"path": str(saved.path), "sha256": saved.sha256})})
    data = tmp_path / "fmnist"
    data.mkdir()
    rng = np.random.default_rng(0)
    fmnist.write_idx(data / fmnist.FILES["train"][0], rng.integers(0, 256, (60, 28, 28), dtype=np.uint8))
    fmnist.write_idx(data / fmnist.FILES["train"][1], rng.integers(0, 10, 60, dtype=np.uint8))
    return tmp_path, zoo_file, data, files


def _args(zoo_file, data, *extra):
    return ["fit-critic", "--model", "tiny", "--zoo", str(zoo_file), "--data-dir", str(data), "--n", "30",
            "--max-epochs", "2", "--patience", "1", *extra]


def test_corrector_saved_and_reloaded_through_the_zoo(setup, capsys):
    """The saved corrector loads back through a zoo entry (generator from the model's file, critic
    from --out) and computes exactly the fitted critic; the printed held-out figures are its own."""
    tmp, zoo_file, data, files = setup
    out = tmp / "corrector.safetensors"
    argv = _args(zoo_file, data, "--arch", "corrector", "--base", "tiny-d0", "--out", str(out), "--json")
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["base"] == "tiny-d0" and res["held_out_per_side"] == [6, 6]
    for key in ("fitted", "fitted_raw", "model_critic"):
        assert np.isfinite(res[key]["logistic_loss"]) and 0 <= res[key]["accuracy"] <= 1
    assert res["saved"]["sha256"] == sha256_of(out)
    assert res["zoo_critic"]["kwargs"]["net"]["arch"] == CRIT["arch"]        # C: D0's architecture
    entry = {"dataset": "fmnist", "z_dim": 4, "generator": GEN, "critic": res["zoo_critic"],
             "weights": [{"path": str(files["tiny"]), "sha256": sha256_of(files["tiny"]), "modules": ["generator"]},
                         res["saved"]["zoo_weights"]]}
    loaded = zoo.load("tiny-corrected", zoo=[str(zoo_file), {"format": 1, "models": {"tiny-corrected": entry}}])
    _, fitted, vr, vf = cmd.fit(build_parser().parse_args(argv))      # the same fit again (seeded)
    with torch.no_grad():
        assert torch.equal(loaded.critic(vr), fitted(vr)) and torch.equal(loaded.critic(vf), fitted(vf))
    assert calibration_report(loaded.critic, vr, vf) == pytest.approx(res["fitted"])
    d0 = zoo.load("tiny-d0", zoo=str(zoo_file)).critic
    assert torch.equal(fitted.base(vr), d0(vr))                        # D0 frozen, untouched


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_fresh_critics_report(setup, capsys, arch):
    _, zoo_file, data, _ = setup
    assert main(_args(zoo_file, data, "--arch", arch, "--json", "--offset", "20")) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["base"] is None and res["settings"]["arch"] == arch
    assert res["zoo_critic"]["kwargs"]["base"] is None
    assert np.isfinite(res["fitted"]["logistic_loss"]) and "saved" not in res


def test_table_output_names_the_critics(setup, capsys):
    tmp, zoo_file, data, _ = setup
    assert main(_args(zoo_file, data, "--out", str(tmp / "c.safetensors"))) == 0
    text = capsys.readouterr().out
    assert "fitted (calibrated)" in text and "dgflow.models.arch.fitted:fitted_critic" in text


@pytest.mark.parametrize("extra, message", [
    (["--offset", "40"], "--offset 40 \\+ --n 30 exceeds the 60 train images"),
    (["--data", "mnist"], "--data 'mnist' is not supported"),
    (["--data", "25gaussians"], "pick the model's dataset with --data"),
    (["--corrector", "--base", "tiny-d0"], "contradicts --base tiny-d0"),
    (["--n", "1"], "--n must be >= 2"),
    (["--out", "x.pt"], "--out must name a .safetensors file"),
])
def test_errors_name_the_option(setup, extra, message):
    _, zoo_file, data, _ = setup
    with pytest.raises(SystemExit, match=message):
        main(_args(zoo_file, data, *extra))


def test_conv_needs_images(setup):
    _, zoo_file, _, _ = setup
    with pytest.raises(SystemExit, match="--arch: arch 'conv' needs square images"):
        main(["fit-critic", "--model", "toy", "--zoo", str(zoo_file), "--n", "20", "--arch", "conv"])


def test_missing_data_dir_is_named(setup, tmp_path):
    _, zoo_file, _, _ = setup
    with pytest.raises(SystemExit, match="--data-dir: missing file train-images-idx3-ubyte.gz"):
        main(_args(zoo_file, tmp_path / "nowhere"))
