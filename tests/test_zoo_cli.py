"""`dgflow zoo list|download|verify` and the Hub publishing script (dry run and a mocked HfApi)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import yaml

from dgflow import zoo
from dgflow.cli import main
from zoo_testutils import isolated, saved  # noqa: F401 (fixtures)
from zoo_testutils import COMMIT, REPO, fake_hub_cache, make_entry, same_outputs, write_zoo

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "publish_zoo.py"


@pytest.fixture
def user_zoo(saved, tmp_path):
    hub = {"path": "absent.safetensors", "repo_id": REPO, "filename": "toy.safetensors",
           "revision": COMMIT, "sha256": saved.sha256}
    return write_zoo(tmp_path / "z.yaml", {"mine": make_entry({"path": str(saved.path), "sha256": saved.sha256}),
                                           "hubbed": make_entry(hub)})


def test_list_shows_models_and_where_their_weights_are(user_zoo, tmp_path, capsys):
    assert main(["zoo", "list", "--zoo", str(user_zoo)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line}
    assert rows["mine"][-1] == "local" and rows["hubbed"][-1] == "hub"
    assert "divergence=kl" in " ".join(rows["mine"])


def test_verify_reports_ok_missing_and_mismatch(saved, user_zoo, capsys):
    assert main(["zoo", "verify", "mine", "--zoo", str(user_zoo)]) == 0
    assert re.search(r"^mine\s+ok\s*$", capsys.readouterr().out, re.M)
    assert main(["zoo", "verify", "--zoo", str(user_zoo)]) == 1  # hubbed is not on disk
    assert "dgflow zoo download hubbed" in capsys.readouterr().out
    with open(saved.path, "ab") as fh:
        fh.write(b"\0")
    assert main(["zoo", "verify", "mine", "--zoo", str(user_zoo)]) == 1
    assert re.search(rf"^mine\s+MISMATCH\s+model 'mine': sha256 mismatch for weights file {saved.path}$",
                     capsys.readouterr().out, re.M)


def test_download_resolves_from_cache_and_explains_when_it_cannot(saved, user_zoo, tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "cache"
    assert main(["zoo", "download", "hubbed", "--zoo", str(user_zoo), "--cache-dir", str(cache)]) == 1
    assert f"hf download {REPO} toy.safetensors --revision {COMMIT}" in capsys.readouterr().err
    snap = fake_hub_cache(cache, saved.path)
    assert main(["zoo", "download", "hubbed", "--zoo", str(user_zoo), "--cache-dir", str(cache)]) == 0
    assert f"hubbed: {snap} (sha256 ok)" in capsys.readouterr().out
    assert main(["zoo", "download", "nope", "--zoo", str(user_zoo)]) == 1
    assert "unknown model 'nope'; known models: hubbed, mine" in capsys.readouterr().err


def _script():
    spec = importlib.util.spec_from_file_location("publish_zoo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_publish_dry_run_touches_no_network(saved, user_zoo, monkeypatch, capsys):
    def refuse(*a, **k):
        raise AssertionError("dry run constructed a Hub client")

    monkeypatch.setattr(huggingface_hub, "HfApi", refuse)
    assert _script().main(["me/dgflow-zoo", "mine", "--zoo", str(user_zoo), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would upload {saved.path} -> me/dgflow-zoo/toy.safetensors (sha256 {saved.sha256})" in out
    pasted = yaml.safe_load(out.split(f"# in {user_zoo.resolve()}:\n", 1)[1])
    weights = pasted["mine"]["weights"]
    assert weights["repo_id"] == "me/dgflow-zoo" and weights["sha256"] == saved.sha256
    zoo.validate_entry("mine", pasted["mine"])
    assert _script().main(["me/dgflow-zoo", "hubbed", "--zoo", str(user_zoo), "--dry-run"]) == 1
    assert "no local weights file to publish" in capsys.readouterr().err


def test_publish_then_load_from_the_hub_cache(saved, user_zoo, tmp_path, monkeypatch, capsys):
    """save -> publish (mocked HfApi) -> the printed entry, file cached -> load gives the same nets."""
    calls = {}

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls["repo"] = (repo_id, kw)

        def create_commit(self, repo_id, operations, **kw):
            calls["ops"] = [(op.path_in_repo, op.path_or_fileobj) for op in operations]
            return SimpleNamespace(oid="c" * 40)

    from dgflow.zoo.publish import publish

    published = publish("me/dgflow-zoo", ["mine"], zoo=user_zoo, api=FakeApi())
    assert calls["repo"][0] == "me/dgflow-zoo" and calls["ops"] == [("toy.safetensors", str(saved.path))]
    entry = published["mine"]
    assert entry["weights"]["revision"] == "c" * 40 and f"revision: {'c' * 40}" in capsys.readouterr().out
    fake_hub_cache(tmp_path / "cache", saved.path, repo_id="me/dgflow-zoo", commit="c" * 40)
    entry["weights"]["path"] = "not/shipped.safetensors"
    m = zoo.load("mine", zoo={"models": {"mine": entry}}, cache_dir=tmp_path / "cache", local_files_only=True)
    assert same_outputs(m, saved.generator, saved.critic)
