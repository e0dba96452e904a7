"""`dgflow refine`: user models from files, zoo models, PNG output, torchrun (2 gloo processes) + resume."""
from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import dgflow
from dgflow.cli import main
from dgflow.commands.refine import as_model
from dgflow.distributed import load_shards, refine_to_shards, shard_name
from dgflow.io import save_modules
from dgflow.models.arch.mlp import MLPCritic, MLPGenerator

NETS = textwrap.dedent("""
    import torch
    from torch import nn
    from dgflow.models.arch.mlp import MLPCritic, MLPGenerator

    def make_g():
        torch.manual_seed(0)
        return MLPGenerator(2, 2, width=16, depth=2)

    def make_d():
        torch.manual_seed(1)
        return MLPCritic(2, width=16, depth=2)

    torch.manual_seed(2)
    W = torch.randn(4, 16)

    def decode(z):  # a plain function z -> 1x4x4 images in [-1, 1]: the model itself
        return torch.tanh(z @ W).view(len(z), 1, 4, 4)

    class ImageCritic(nn.Module):  # a class: a factory
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.lin = nn.Linear(16, 1)

        def forward(self, x):
            return self.lin(x.flatten(1))
""")
# random nets have a critic at chance: --no-auto-stop, else refine's default leaves every chunk unchanged
FLOW = ["--steps", "3", "--eta", "0.05", "--chunk-size", "16", "--no-progress", "--no-auto-stop"]


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shard_bytes(out, chunks):
    return [(out / shard_name(c)).read_bytes() for c in chunks]


def test_torchrun_two_gloo_processes_match_one_process_and_resume(nets, tmp_path):
    args = ["--generator", f"{nets}:make_g", "--critic", f"{nets}:make_d", "-n", "64", *FLOW]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["refine", *args, "--out", str(one)]) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "dgflow.cli", "refine", *args, "--out", str(two),
           "--stop-after", "1"]  # each rank refines one chunk, then the "killed" run stops
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in two.glob("chunk_*")) == [shard_name(0), shard_name(1)]
    manifest = json.loads((two / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["missing"] == [2, 3]
    assert shard_bytes(two, [0, 1]) == shard_bytes(one, [0, 1])  # rank 1 wrote chunk 1

    assert main(["refine", *args, "--out", str(two)]) == 0  # the same command resumes
    assert shard_bytes(two, range(4)) == shard_bytes(one, range(4))
    data = load_shards(two)
    assert data["z_refined"].shape == (64, 2) and not np.array_equal(data["z"], data["z_refined"])

    ns = runpy.run_path(nets)  # the library on the same models writes the same shards
    g = dgflow.as_generator(ns["make_g"]())
    refine_to_shards(g, ns["make_d"](), g.prior, 64, tmp_path / "lib", chunk_size=16, seed=0,
                     refine_kwargs={"steps": 3, "eta": 0.05, "gamma": 0.01, "divergence": "kl", "stop": None})
    assert shard_bytes(tmp_path / "lib", range(4)) == shard_bytes(one, range(4))


def test_function_generator_class_critic_and_png_folder(nets, tmp_path):
    out, png = tmp_path / "out", tmp_path / "png"
    assert main(["refine", "--generator", f"{nets}:decode", "--critic", f"{nets}:ImageCritic",
                 "--z-dim", "4", "-n", "20", *FLOW, "--out", str(out), "--png", str(png)]) == 0
    x = load_shards(out)["x"]
    assert x.shape == (20, 1, 4, 4)
    files = sorted(p.name for p in png.iterdir())
    assert files == [f"{i:07d}.png" for i in range(20)]
    img = np.asarray(Image.open(png / files[13]))
    assert img.shape == (4, 4) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, np.round((x[13, 0] + 1) / 2 * 255).clip(0, 255).astype(np.uint8))


def test_model_from_zoo_with_entry_settings_and_overrides(tmp_path, monkeypatch):
    from dgflow.zoo import registry

    empty = tmp_path / "packaged.yaml"  # only the test's zoo file, not the packaged one
    empty.write_text("format: 1\nmodels: {}\n")
    monkeypatch.setattr(registry, "PACKAGED_ZOO", empty)
    monkeypatch.delenv("DGFLOW_ZOO", raising=False)
    torch.manual_seed(0)
    g, d = MLPGenerator(2, 2, width=8, depth=1), MLPCritic(2, width=8, depth=1)
    sha = save_modules(tmp_path / "tiny.safetensors", {"generator": g, "critic": d})
    entry = {"dataset": "25gaussians", "z_dim": 2,
             "generator": {"arch": "dgflow.models.arch.mlp:MLPGenerator", "kwargs": {"width": 8, "depth": 1}},
             "critic": {"arch": "dgflow.models.arch.mlp:MLPCritic", "kwargs": {"width": 8, "depth": 1},
                        "convention": "wgan"},
             "refine": {"steps": 2, "eta": 0.01, "gamma": 0.0},
             "weights": {"path": str(tmp_path / "tiny.safetensors"), "sha256": sha}}
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"format": 1, "models": {"tiny-test": entry}}))
    out = tmp_path / "out"
    assert main(["refine", "--model", "tiny-test", "--zoo", str(zoo), "-n", "10", "--eta", "0.02",
                 "--no-progress", "--out", str(out)]) == 0
    spec = json.loads((out / "run.json").read_text())
    from dgflow.commands.refine import refine_defaults
    # command line over the zoo entry over refine()'s own defaults
    assert spec["refine"] == {"steps": 2, "eta": 0.02, "gamma": 0.0, "divergence": "kl",
                              "clip": refine_defaults()["clip"], "stop": "auto"}
    assert spec["model"] == {"model": "tiny-test", "sha256": [sha]}
    gen = dgflow.as_generator(g, 2)
    from dgflow.distributed import chunk_latents
    z, rng = chunk_latents(gen.prior, 0, 0, 10)
    want = dgflow.refine(gen, d, z, steps=2, eta=0.02, gamma=0.0, generator_rng=rng)
    np.testing.assert_array_equal(load_shards(out)["z_refined"], want.numpy())
    out2 = tmp_path / "out2"
    assert main(["refine", "--model", "tiny-test", "--zoo", str(zoo), "-n", "4", "--clip", "none", "--no-progress",
                 "--out", str(out2)]) == 0
    assert json.loads((out2 / "run.json").read_text())["refine"]["clip"] is None
    with pytest.raises(SystemExit, match="--model nope"):
        main(["refine", "--model", "nope", "--zoo", str(zoo), "-n", "4", "--out", str(tmp_path / "x")])


def test_model_or_factory_resolution():
    g = MLPGenerator(2, 2, width=4, depth=1)
    assert as_model(g, "generator") is g  # an instance is the model
    assert isinstance(as_model(MLPCritic, "critic"), MLPCritic)  # a class is a factory
    assert as_model(lambda: g, "generator") is g  # a zero-argument callable is a factory

    def fn(z):
        return z

    assert as_model(fn, "generator") is fn  # a callable that needs z is the model
    with pytest.raises(SystemExit, match="factory returned a int"):
        as_model(lambda: 3, "critic")
    with pytest.raises(SystemExit, match="--critic is a str"):
        as_model("x", "critic")


@pytest.mark.parametrize("argv, message", [
    (["--generator", "nets", "--critic", "a:b"], "must look like module:callable"),
    (["--generator", "no_such_module_xyz:g", "--critic", "a:b"], "cannot load --generator"),
    (["--critic", "a:b"], "give --model NAME, or both --generator and --critic"),
    (["--model", "m", "--generator", "a:b"], "either --model or --generator/--critic, not both"),
])
def test_cli_errors_name_the_argument(argv, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        main(["refine", *argv, "-n", "4", "--out", str(tmp_path)])


def test_function_generator_needs_z_dim(nets, tmp_path):
    with pytest.raises(SystemExit, match="--z-dim"):
        main(["refine", "--generator", f"{nets}:decode", "--critic", f"{nets}:ImageCritic", "-n", "4",
              "--out", str(tmp_path / "o")])


def test_stop_real_stops_each_chunk_by_logit_match_and_is_recorded(nets, tmp_path):
    from dgflow.distributed import chunk_latents
    from dgflow.stopping import LogitMatch

    ns = runpy.run_path(nets)
    g, d = dgflow.as_generator(ns["make_g"]()), ns["make_d"]()
    # "real" data the flow can reach: samples refined for 20 steps score higher than the prior's
    z_real = g.prior.sample(200, generator=torch.Generator().manual_seed(5))
    real = dgflow.generate(g, dgflow.refine(g, d, z_real, steps=20, eta=0.05, generator_rng=6, stop=None))
    np.save(tmp_path / "real.npy", real.numpy())
    args = ["--generator", f"{nets}:make_g", "--critic", f"{nets}:make_d", "-n", "48", "--steps", "40",
            "--eta", "0.05", "--chunk-size", "16", "--no-progress", "--stop-real", str(tmp_path / "real.npy"),
            "--stop-fraction", "0.3"]
    out = tmp_path / "out"
    assert main(["refine", *args, "--out", str(out)]) == 0
    rule = json.loads((out / "run.json").read_text())["refine"]["stop"]
    target = LogitMatch(d, real).target
    assert rule == {"rule": "LogitMatch", "target": target, "fraction": 0.3}
    data = load_shards(out, keys=("z_refined", "stop_step"))
    stopped = []
    for c in range(3):  # each chunk is one batch of the rule; same result as the library
        z, rng = chunk_latents(g.prior, 0, c, 16)
        lib = LogitMatch.from_target(target, 0.3)
        want = dgflow.refine(g, d, z, steps=40, eta=0.05, generator_rng=rng, stop=lib)
        rows = slice(16 * c, 16 * (c + 1))
        np.testing.assert_array_equal(data["z_refined"][rows], want.numpy())
        assert (data["stop_step"][rows] == (-1 if lib.step is None else lib.step)).all()
        stopped.append(lib.step)
    assert any(s is not None and 0 < s < 40 for s in stopped), stopped  # the rule did end a flow early

    np.save(tmp_path / "real.npy", real[:100].numpy())  # other real data: another run, not a resume
    with pytest.raises(SystemExit, match="other settings"):
        main(["refine", *args, "--out", str(out)])


@pytest.mark.parametrize("extra, make, message", [
    (["--stop-fraction", "0.5"], None, "--stop-fraction needs --stop-real"),
    (["--stop-real", "missing.npy"], None, "no such file"),
    (["--stop-real", "{tmp}/real.txt"], "txt", "use a .npy, .npz or .pt file"),
    (["--stop-real", "{tmp}/real.npz"], "npz", "give one array or one named 'x'"),
    (["--stop-real", "{tmp}/real.npy", "--stop-fraction", "2"], "npy", "fraction must be in"),
    (["--stop-real", "{tmp}/real.npy"], "ints", "non-empty float array"),
])
def test_stop_real_errors_name_the_option(nets, tmp_path, extra, make, message):
    if make == "txt":
        (tmp_path / "real.txt").write_text("1 2\n")
    elif make == "npz":
        np.savez(tmp_path / "real.npz", a=np.zeros((3, 2)), b=np.zeros((3, 2)))
    elif make in ("npy", "ints"):
        np.save(tmp_path / "real.npy", np.zeros((3, 2), dtype=np.float32 if make == "npy" else np.int64))
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    with pytest.raises(SystemExit, match=message):
        main(["refine", "--generator", f"{nets}:make_g", "--critic", f"{nets}:make_d", "-n", "4",
              "--out", str(tmp_path / "o"), *extra])


def test_channels_last_opt_in_is_recorded_and_changes_results_only_by_rounding(tmp_path):
    args = ["--generator", "dgflow.models.arch.dcgan:DCGANGenerator",
            "--critic", "dgflow.models.arch.dcgan:SNDCGANDiscriminator", "-n", "6", "--steps", "2",
            "--chunk-size", "6", "--no-progress", "--seed", "3", "--no-auto-stop"]
    plain, cl = tmp_path / "plain", tmp_path / "cl"
    torch.manual_seed(0)  # the factories (the classes) draw their init from the global seed
    assert main(["refine", *args, "--out", str(plain)]) == 0
    torch.manual_seed(0)
    assert main(["refine", *args, "--channels-last", "--out", str(cl)]) == 0
    assert json.loads((cl / "run.json").read_text())["model"]["channels_last"] is True
    assert "channels_last" not in json.loads((plain / "run.json").read_text())["model"]
    a, b = load_shards(plain), load_shards(cl)
    assert not np.array_equal(a["z"], a["z_refined"])
    np.testing.assert_allclose(b["z_refined"], a["z_refined"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(b["x"], a["x"], rtol=0, atol=1e-5)
