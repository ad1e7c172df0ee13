"""The MONAI bundle: metadata, inference config on a synthetic study, TorchScript export."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from mixfuse_med.io import load_volume
from mixfuse_med.networks import MixFuse
from mixfuse_med.synthetic import make_synthetic_study

BUNDLE = Path(__file__).parents[1] / "workflows" / "mixfuse_bundle"
SHARED_SCHEMA = Path(__file__).parents[2] / "shared" / "schemas" / "meta_schema_20240725.json"


def bundle(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(MixFuse().state_dict(), path)
    return path


def test_metadata_has_what_the_schema_requires():
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    required = ["schema", "version", "monai_version", "pytorch_version", "numpy_version",
                "required_packages_version", "task", "description", "authors", "copyright",
                "network_data_format"]
    assert not [key for key in required if key not in meta]
    assert meta["network_data_format"]["inputs"].keys() == {"mri", "functional"}
    assert meta["version"] in meta["changelog"]
    if SHARED_SCHEMA.is_file():  # the published schema, where this checkout sits beside it
        done = bundle("verify_metadata", "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
                      "--filepath", str(SHARED_SCHEMA))
        assert done.returncode == 0, done.stderr[-2000:]


def test_inference_config_fuses_a_study_on_the_mri_grid(tmp_path, random_weights):
    study = make_synthetic_study(tmp_path / "study", modality="PET", seed=5, downsample=3)
    done = bundle("run", "--config_file", str(BUNDLE / "configs" / "inference.json"),
                  "--bundle_root", str(BUNDLE), "--output_dir", str(tmp_path / "out"),
                  "--mri", str(study.mri_dicom), "--functional", str(study.functional_dicom),
                  "--name", "patient1", "--checkpoint", str(random_weights))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    mri = load_volume(study.mri_dicom)
    out = tmp_path / "out" / "patient1"
    luma = nib.load(out / "fused_luma.nii.gz")
    rgb = nib.load(out / "fused_rgb.nii.gz")
    pet = nib.load(out / "pet_on_mri.nii.gz")
    for image in (luma, rgb, pet):
        np.testing.assert_allclose(image.affine, np.asarray(mri.affine), atol=1e-4)
        assert image.shape[:3] == tuple(mri.shape[1:])
    values = luma.get_fdata()
    assert values.min() >= 0 and values.max() <= 1
    assert json.loads((out / "fusion_report.json").read_text())["functional_units"] == "SUVbw"


def test_ckpt_export_traces_the_network_with_the_same_output(tmp_path, random_weights):
    exported = tmp_path / "model.ts"
    done = bundle("ckpt_export", "network_def", "--filepath", str(exported),
                  "--ckpt_file", str(random_weights),
                  "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
                  "--config_file", str(BUNDLE / "configs" / "inference.json"),
                  "--bundle_root", str(BUNDLE), "--use_trace", "True", "--input_shape", "[1, 2, 48, 40]")
    assert done.returncode == 0, done.stderr[-3000:]
    traced = torch.jit.load(str(exported))
    eager = MixFuse()
    eager.load_state_dict(torch.load(random_weights, weights_only=True))
    eager.eval()
    pair = torch.rand(1, 2, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(traced(pair), eager(pair[:, :1], pair[:, 1:]), atol=1e-5, rtol=0)


def test_evaluate_config_scores_a_volume_datalist(tmp_path, random_weights):
    study = make_synthetic_study(tmp_path / "study", modality="SPECT", seed=6, downsample=3)
    datalist = tmp_path / "studies.json"
    datalist.write_text(json.dumps([{"mri": str(study.mri_nifti), "functional": str(study.functional_nifti),
                                     "modality": "SPECT", "name": "s1"}]))
    done = bundle("run", "--config_file", str(BUNDLE / "configs" / "evaluate.json"),
                  "--bundle_root", str(BUNDLE), "--output_dir", str(tmp_path / "eval"),
                  "--datalist_file", str(datalist), "--checkpoint", str(random_weights))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["cases"] == 1
    assert set(summary["mean"]) == {"mixfuse", "mean", "max", "mri", "functional"}
    assert 0 < summary["mean"]["mri"]["SSIM"] <= 2
