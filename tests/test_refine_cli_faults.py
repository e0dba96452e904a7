"""`dgflow refine` faults a new user hit (issue 14): options validated before anything is written,
resumes of a changed checkpoint refused, one-line errors, --threads, --critic-convention."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from dgflow.cli import main
from dgflow.distributed import load_shards

NETS = textwrap.dedent("""
    import os
    import torch
    from dgflow.models.arch.mlp import MLPCritic, MLPGenerator

    def make_g():  # loads "its checkpoint": the seed in the file next to this one
        seed = int(open(os.path.join(os.path.dirname(__file__), "ckpt.txt")).read())
        torch.manual_seed(seed)
        return MLPGenerator(2, 2, width=16, depth=2)

    def make_d():
        torch.manual_seed(1)
        return MLPCritic(2, width=16, depth=2)

    def make_prob_d():  # the same critic, giving the probability of being real
        d = make_d()
        return lambda x: torch.sigmoid(d(x))

    class TextG(torch.nn.Module):  # z (2) -> softmax over "abc" at 5 positions, (N, 5, 3)
        z_dim = 2

        def __init__(self):
            super().__init__()
            torch.manual_seed(4)
            self.lin = torch.nn.Linear(2, 15)

        def forward(self, z):
            return torch.softmax(3 * self.lin(z).view(len(z), 5, 3), dim=-1)

    class TextD(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.lin = torch.nn.Linear(15, 1)

        def forward(self, x):
            return self.lin(x.flatten(1))
""")
FLOW = ["-n", "32", "--steps", "3", "--eta", "0.05", "--chunk-size", "16", "--no-progress", "--no-auto-stop"]


@pytest.fixture
def nets(tmp_path):
    (tmp_path / "ckpt.txt").write_text("0")
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return str(path)


def models(nets, critic="make_d"):
    return ["--generator", f"{nets}:make_g", "--critic", f"{nets}:{critic}"]


@pytest.mark.parametrize("bad, message", [(["--eta", "-1"], "eta must be > 0"),
                                          (["--clip", "0"], "clip must be > 0"),
                                          (["--png", "PNGDIR"], "are not images")])
def test_a_bad_option_writes_nothing_and_the_corrected_command_runs(nets, tmp_path, bad, message):
    out = tmp_path / "out"
    bad = [str(tmp_path / a) if a == "PNGDIR" else a for a in bad]
    with pytest.raises(SystemExit, match=message):
        main(["refine", *models(nets), *FLOW, *bad, "--out", str(out)])
    assert not (out / "run.json").exists()
    assert main(["refine", *models(nets), *FLOW, "--out", str(out)]) == 0


def test_resume_with_a_changed_checkpoint_is_refused(nets, tmp_path):
    out = tmp_path / "out"
    assert main(["refine", *models(nets), *FLOW, "--out", str(out), "--stop-after", "1"]) == 0
    (tmp_path / "ckpt.txt").write_text("5")  # the user retrained: same names, other weights
    with pytest.raises(SystemExit, match=r"other settings \(differs in \['model'\]"):
        main(["refine", *models(nets), *FLOW, "--out", str(out)])
    (tmp_path / "ckpt.txt").write_text("0")
    assert main(["refine", *models(nets), *FLOW, "--out", str(out)]) == 0
    assert len(json.loads((out / "run.json").read_text())["model"]["state_sha256"]) == 64


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_unusable_out_is_one_line(nets, tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "sub"
    with pytest.raises(SystemExit, match=r"^dgflow refine: cannot write .*blocker"):
        main(["refine", *models(nets), *FLOW, "--out", str(out)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line(nets, tmp_path):
    with pytest.raises(SystemExit, match="--device cuda: no CUDA device is available here"):
        main(["refine", *models(nets), *FLOW, "--device", "cuda", "--out", str(tmp_path / "o")])


def test_threads_option_sets_the_thread_count_and_keeps_the_bytes(nets, tmp_path, monkeypatch):
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    old = torch.get_num_threads()
    try:
        assert main(["refine", *models(nets), *FLOW, "--threads", "1", "--out", str(tmp_path / "a")]) == 0
    finally:
        real(old)
    assert seen == [1]
    assert main(["refine", *models(nets), *FLOW, "--out", str(tmp_path / "b")]) == 0
    a, b = load_shards(tmp_path / "a"), load_shards(tmp_path / "b")
    assert np.array_equal(a["z_refined"], b["z_refined"])
    with pytest.raises(SystemExit, match="--threads must be >= 1"):
        main(["refine", *models(nets), *FLOW, "--threads", "0", "--out", str(tmp_path / "c")])


def test_probability_critic_through_the_command_line(nets, tmp_path):
    assert main(["refine", *models(nets), *FLOW, "--out", str(tmp_path / "logit")]) == 0
    assert main(["refine", *models(nets, "make_prob_d"), *FLOW, "--critic-convention", "prob",
                 "--out", str(tmp_path / "prob")]) == 0
    a, b = load_shards(tmp_path / "logit"), load_shards(tmp_path / "prob")
    np.testing.assert_allclose(a["z_refined"], b["z_refined"], atol=1e-5)
    assert json.loads((tmp_path / "prob" / "run.json").read_text())["model"]["convention"] == "prob"
    assert main(["refine", *models(nets), *FLOW, "--temperature", "2", "--out", str(tmp_path / "t")]) == 0
    t = load_shards(tmp_path / "t")
    assert not np.allclose(t["z_refined"], a["z_refined"])
    with pytest.raises(SystemExit, match="temperature must be > 0"):
        main(["refine", *models(nets), *FLOW, "--temperature", "0", "--out", str(tmp_path / "t0")])


def test_text_model_writes_decoded_strings_per_chunk(nets, tmp_path):
    from dgflow.data.text import decode

    out = tmp_path / "out"
    text = ["--generator", f"{nets}:TextG", "--critic", f"{nets}:TextD"]
    with pytest.raises(SystemExit, match="vocab"):  # a vocabulary that does not fit the model's output
        main(["refine", *text, *FLOW, "--text-vocab", "ab", "--out", str(out)])
    assert not (out / "run.json").exists()
    assert main(["refine", *text, *FLOW, "--text-vocab", "abc", "--out", str(out)]) == 0
    x = load_shards(out)["x"]
    lines = (out / "chunk_000000.txt").read_text().splitlines() + (out / "chunk_000001.txt").read_text().splitlines()
    assert lines == decode(x, "abc") and len(lines) == 32 and all(len(s) == 5 for s in lines)
    assert json.loads((out / "run.json").read_text())["model"]["text_vocab"] == "abc"


def test_zoo_text_model_writes_its_strings_without_an_option(tmp_path):
    out = tmp_path / "out"
    assert main(["refine", "--model", "text-fortunes-wgangp", "-n", "6", "--steps", "1", "--no-progress",
                 "--out", str(out)]) == 0
    lines = (out / "chunk_000000.txt").read_text().splitlines()
    assert len(lines) == 6 and all(len(s) == 32 for s in lines)
    with pytest.raises(SystemExit, match="critic-convention/--temperature apply to --critic"):
        main(["refine", "--model", "text-fortunes-wgangp", "-n", "6", "--temperature", "2", "--out", str(tmp_path / "t")])
