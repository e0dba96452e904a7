"""dgflow.distributed: chunk seeding, world-size independence, resume, atomic shards, memory chunking."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dgflow
from dgflow.distributed import (MANIFEST_FILE, chunk_bounds, chunk_latents, chunk_seed, load_shards,
                                refine_to_shards, shard_name, to_uint8_images)
from dgflow.models.arch.mlp import MLPCritic, MLPGenerator

KW = {"steps": 3, "eta": 0.05, "gamma": 0.01}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared CPU: more threads only add contention."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    return dgflow.as_generator(MLPGenerator(2, 2, width=16, depth=2)), MLPCritic(2, width=16, depth=2)


def run(pair, out, n=50, chunk_size=16, **kw):
    g, d = pair
    kw.setdefault("refine_kwargs", KW)
    return refine_to_shards(g, d, g.prior, n, out, chunk_size=chunk_size, seed=7, **kw)


def shard_bytes(out, n_chunks):
    return [(out / shard_name(c)).read_bytes() for c in range(n_chunks)]


def test_chunk_seeds_are_distinct_and_depend_on_both_arguments():
    seeds = {chunk_seed(0, c) for c in range(2000)} | {chunk_seed(1, c) for c in range(2000)}
    assert len(seeds) == 4000
    assert all(0 <= s < 2 ** 63 for s in seeds)
    assert chunk_seed(3, 5) == chunk_seed(3, 5)


def test_chunk_bounds_cover_range_once():
    b = chunk_bounds(50, 16)
    assert b == [(0, 16), (16, 32), (32, 48), (48, 50)]
    assert np.array_equal(np.concatenate([np.arange(*x) for x in b]), np.arange(50))


def test_shard_is_refine_of_its_chunk_latents(pair, tmp_path):
    """Chunk c = refine of the latents drawn from (seed, c), noise from the same generator."""
    run(pair, tmp_path)
    g, d = pair
    z, rng = chunk_latents(g.prior, 7, 2, 16)
    want = dgflow.refine(g, d, z, generator_rng=rng, **KW)
    with np.load(tmp_path / shard_name(2)) as data:
        assert np.array_equal(data["index"], np.arange(32, 48))
        assert np.array_equal(data["z"], z.numpy())
        assert np.array_equal(data["z_refined"], want.numpy())
        assert np.array_equal(data["x"], dgflow.generate(g, want).numpy())
    assert not np.array_equal(np.load(tmp_path / shard_name(1))["z"], z.numpy())


def test_output_is_identical_for_any_world_size(pair, tmp_path):
    one, three = tmp_path / "w1", tmp_path / "w3"
    res = run(pair, one)
    assert res.complete and res.written == [0, 1, 2, 3]
    for rank in (2, 1, 0):  # three independent "jobs", rank 0 last
        res = run(pair, three, rank=rank, world_size=3)
        assert res.written == [c for c in range(4) if c % 3 == rank]
    assert res.complete
    assert shard_bytes(one, 4) == shard_bytes(three, 4)
    a, b = load_shards(one), load_shards(three)
    assert all(np.array_equal(a[k], b[k]) for k in ("z", "z_refined", "x"))
    assert a["x"].shape == (50, 2)


def test_stopped_run_resumes_without_loss_or_duplication(pair, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    run(pair, full)
    res = run(pair, cut, max_chunks=2)
    assert res.written == [0, 1] and not res.complete
    manifest = json.loads((cut / MANIFEST_FILE).read_text())
    assert manifest["missing"] == [2, 3] and [s["chunk"] for s in manifest["shards"]] == [0, 1]
    with pytest.raises(ValueError, match=r"incomplete, chunks \[2, 3\] missing"):
        load_shards(cut)
    (cut / ".chunk_000002.npz.999.tmp").write_bytes(b"half a shard")  # a killed writer's leftover
    res = run(pair, cut)
    assert res.written == [2, 3] and res.complete
    assert not list(cut.glob("*.tmp")) and not list(cut.glob(".*.tmp"))
    assert run(pair, cut).written == []  # nothing left to do
    assert shard_bytes(full, 4) == shard_bytes(cut, 4)
    assert np.array_equal(load_shards(cut)["x"], load_shards(full)["x"])


def test_memory_batch_size_gives_the_same_shards(pair, tmp_path):
    run(pair, tmp_path / "a")
    run(pair, tmp_path / "b", refine_kwargs={**KW, "batch_size": 5})
    a, b = load_shards(tmp_path / "a"), load_shards(tmp_path / "b")
    for k in ("z", "z_refined", "x"):
        torch.testing.assert_close(torch.from_numpy(b[k]), torch.from_numpy(a[k]), rtol=1e-6, atol=1e-6)


def test_resume_with_other_settings_is_refused(pair, tmp_path):
    run(pair, tmp_path, max_chunks=1)
    with pytest.raises(ValueError, match=r"other settings \(differs in \['refine'\]"):
        run(pair, tmp_path, refine_kwargs={**KW, "steps": 4})
    with pytest.raises(ValueError, match="chunk_size"):
        run(pair, tmp_path, chunk_size=8)


def test_modified_shard_is_detected(pair, tmp_path):
    run(pair, tmp_path, n=20)
    path = tmp_path / shard_name(1)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256 differs"):
        load_shards(tmp_path)


def test_argument_errors(pair, tmp_path):
    with pytest.raises(ValueError, match="generator_rng"):
        run(pair, tmp_path, refine_kwargs={"generator_rng": 1})
    with pytest.raises(ValueError, match="rank must be < world_size=2"):
        run(pair, tmp_path, rank=2, world_size=2)
    with pytest.raises(ValueError, match="together"):
        run(pair, tmp_path, rank=0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        run(pair, tmp_path, n=0)
    with pytest.raises(ValueError, match="png_dir: samples of shape \\(2,\\) are not images"):
        run(pair, tmp_path / "p", png_dir=tmp_path / "png")


def test_uint8_images_map_the_value_range():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 2, 2)
    u = to_uint8_images(x)
    assert u.shape == (1, 2, 2, 1) and u.dtype == np.uint8
    assert u.ravel().tolist() == [0, 128, 255, 255]
    assert to_uint8_images(x, (0.0, 3.0)).ravel().tolist() == [0, 0, 85, 255]
