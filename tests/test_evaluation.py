"""Scoring fused results beside the trivial baselines, and the 2D command-line tools."""

import json

import numpy as np
import pytest
import torch
from fusion_pairs import write_pairs
from PIL import Image

from mixfuse_med.cli import main
from mixfuse_med.errors import OutputExistsError
from mixfuse_med.evaluation import BASELINES, FUSION_METHOD, score_case, summarize, write_report
from mixfuse_med.metrics import MAIN_METRICS
from mixfuse_med.networks import MixFuse


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "model.pt"
    torch.save(MixFuse().state_dict(), path)
    return path


def test_every_case_is_scored_for_the_fusion_and_each_baseline():
    rng = np.random.default_rng(0)
    mri, pet = rng.random((32, 32)), rng.random((32, 32, 3))
    rows = score_case("c1", mri, pet, np.maximum(mri[..., None], pet))
    assert [r["method"] for r in rows] == [FUSION_METHOD, *BASELINES]
    assert all(set(MAIN_METRICS) <= r.keys() for r in rows)


def test_summary_counts_metrics_won_against_every_baseline():
    def row(method, value):
        return {"case": "c", "method": method, **{m: value for m in MAIN_METRICS},
                "MEF_SSIM": 0.0, "CC": 0.0, "PSNR": 0.0, "MS_SSIM": 0.0}

    rows = [row(FUSION_METHOD, 2.0), row("mean", 1.0), row("max", 1.5)]
    rows[0]["SSIM"] = 1.2  # loses to "max" on SSIM only
    summary = summarize(rows)
    assert summary["main_metrics_won"] == f"{len(MAIN_METRICS) - 1}/{len(MAIN_METRICS)}"
    assert "SSIM" not in summary["beats_every_baseline_on"]
    assert summary["mean"]["mean"]["EN"] == 1.0


def test_reports_are_written_once(tmp_path):
    rows = score_case("c1", np.zeros((16, 16)) + 0.5, np.ones((16, 16)) * 0.2, np.ones((16, 16)) * 0.4)
    paths = write_report(rows, tmp_path)
    assert json.loads(paths["summary_json"].read_text())["cases"] == 1
    assert paths["per_case_csv"].read_text().count("\n") == 1 + len(rows)
    with pytest.raises(OutputExistsError):
        write_report(rows, tmp_path)


def test_fuse2d_command_writes_a_colour_image(tmp_path, weights):
    folder = write_pairs(tmp_path, "PET", slices=[10], size=40)
    out = tmp_path / "fused.png"
    args = ["fuse2d", "--mri", str(folder / "MRI" / "25010.png"), "--functional",
            str(folder / "PET" / "25010.png"), "--out", str(out), "--weights", str(weights)]
    assert main(args) == 0
    with Image.open(out) as image:
        assert image.mode == "RGB" and image.size == (40, 40)
    assert main(args) == 2  # refuses to overwrite
    assert main([*args, "--overwrite"]) == 0


def test_fuse2d_names_a_missing_file(tmp_path, weights, capsys):
    missing = tmp_path / "nope.png"
    code = main(["fuse2d", "--mri", str(missing), "--functional", str(missing), "--out",
                 str(tmp_path / "f.png"), "--weights", str(weights)])
    assert code == 2
    assert f"{missing}: no such image file" in capsys.readouterr().err


def test_evaluate_command_scores_a_folder_of_pairs(tmp_path, weights):
    write_pairs(tmp_path / "pairs", "PET", slices=range(10, 13), size=32)
    assert main(["evaluate", str(tmp_path / "pairs"), "--out", str(tmp_path / "report"),
                 "--weights", str(weights)]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["cases"] == 3 and set(summary["mean"]) == {FUSION_METHOD, *BASELINES}
