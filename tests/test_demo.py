"""The demo end to end on a small n: the shipped checkpoint loads, refinement helps."""
import json

import pytest

from dgflow import cli, demo


def test_demo_improves_high_quality_fraction(tmp_path, capsys):
    png = tmp_path / "demo.png"
    assert cli.main(["demo", "--n", "400", "--steps", "25", "--seed", "1", "--out", str(png), "--json"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])
    assert res["after"]["hq"] > res["before"]["hq"] + 0.1
    assert res["after"]["modes"] >= res["before"]["modes"] - 1
    assert res["after"]["emd"] < res["before"]["emd"]
    assert "high-quality %" in out and png.stat().st_size > 10_000


def test_demo_model_comes_from_the_packaged_zoo():
    model = demo.load_demo_model()
    assert model.name == demo.MODEL and model.prior.shape == (2,)


def test_demo_rejects_bad_n():
    with pytest.raises(SystemExit, match="--n must be >= 1"):
        cli.main(["demo", "--n", "0"])
