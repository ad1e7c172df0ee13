"""The ``mixfuse`` command: help for each subcommand, ``fuse``, ``demo``, clear errors, batch without Dask."""

from __future__ import annotations

import json
import sys

import nibabel as nib
import pytest
from batch_fixtures import checksums, copy_series, fast_options, nifti_patient

from mixfuse_med.cli import build_parser, main

SUBCOMMANDS = ("fuse", "batch", "demo", "evaluate", "fuse2d")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: mixfuse {command}" in capsys.readouterr().out


def test_public_options_are_spelled_as_documented():
    parser = build_parser()
    fuse = parser.parse_args(["fuse", "--mri", "m", "--functional", "f", "--modality", "pet", "--out", "o"])
    assert (fuse.modality, str(fuse.out)) == ("PET", "o")
    batch = parser.parse_args(["batch", "root", "--out", "o", "--scheduler", "tcp://h:8786",
                               "--workers", "3"])
    assert (batch.scheduler, batch.workers) == ("tcp://h:8786", 3)
    demo = parser.parse_args(["demo"])
    assert str(demo.out) == "mixfuse-demo" and demo.downsample == 2


def test_fuse_dicom_study_prints_what_it_wrote_and_leaves_inputs_alone(pet_ds4, tiny_weights_file, tmp_path,
                                                                        capsys):
    before = checksums(pet_ds4.out_dir)
    out = tmp_path / "out"
    status = main(["fuse", "--mri", str(pet_ds4.mri_dicom), "--functional", str(pet_ds4.functional_dicom),
                   "--out", str(out), *fast_options(tiny_weights_file)])
    printed = capsys.readouterr().out
    assert status == 0
    assert checksums(pet_ds4.out_dir) == before
    for name in ("fused_luma.nii.gz", "fused_rgb.nii.gz", "pet_on_mri.nii.gz", "fusion_report.json"):
        assert (out / name).is_file() and str(out / name) in printed
    assert (out / "dicom" / "fused_rgb").is_dir() and str(out / "dicom" / "fused_rgb") in printed
    report = json.loads((out / "fusion_report.json").read_text())
    assert report["modality"] == "PET" and report["functional_units"] == "SUVbw"  # modality from DICOM
    assert nib.load(out / "fused_luma.nii.gz").shape == tuple(nib.load(pet_ds4.mri_nifti).shape)

    again = main(["fuse", "--mri", str(pet_ds4.mri_dicom), "--functional", str(pet_ds4.functional_dicom),
                  "--out", str(out), *fast_options(tiny_weights_file)])
    error = capsys.readouterr().err
    assert again == 2 and "already exists" in error and "--overwrite" in error
    assert json.loads((out / "fusion_report.json").read_text()) == report  # untouched


def test_fuse_errors_name_the_file_and_the_problem(pet_ds4, tiny_weights_file, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["fuse", "--mri", str(missing), "--functional", str(pet_ds4.functional_nifti),
                 "--modality", "PET", "--out", str(tmp_path / "o")]) == 2
    assert f"{missing}: does not exist" in capsys.readouterr().err

    assert main(["fuse", "--mri", str(pet_ds4.mri_nifti), "--functional", str(pet_ds4.mri_nifti),
                 "--out", str(tmp_path / "o")]) == 2
    assert "cannot tell PET from SPECT" in capsys.readouterr().err

    other = copy_series(pet_ds4.functional_dicom, tmp_path / "other_pt", PatientID="SOMEONE-ELSE")
    assert main(["fuse", "--mri", str(pet_ds4.mri_dicom), "--functional", str(other),
                 "--out", str(tmp_path / "o")]) == 2
    assert "PatientID differs" in capsys.readouterr().err

    inside = pet_ds4.mri_dicom / "fused"
    assert main(["fuse", "--mri", str(pet_ds4.mri_dicom), "--functional", str(pet_ds4.functional_dicom),
                 "--out", str(inside)]) == 2
    assert "inside the input folder" in capsys.readouterr().err and not inside.exists()
    assert not (tmp_path / "o").exists()


def test_error_output_is_one_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not gzip")
    status = main(["fuse", "--mri", str(bad), "--functional", str(bad), "--modality", "PET",
                   "--out", str(tmp_path / "o")])
    error = capsys.readouterr().err
    assert status == 2 and error.startswith(f"mixfuse fuse: error: {bad}: cannot read NIfTI header")
    assert len(error.strip().splitlines()) == 1


@pytest.mark.slow
def test_demo_builds_and_fuses_the_sample_study(tiny_weights_file, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--downsample", "4", *fast_options(tiny_weights_file)]) == 0
    printed = capsys.readouterr().out
    fused = out / "fused"
    for path in (fused / "fused_rgb.nii.gz", fused / "fused_luma.nii.gz", fused / "pet_on_mri.nii.gz",
                 fused / "dicom" / "fused_rgb", fused / "dicom" / "pet_on_mri"):
        assert path.exists() and str(path) in printed
    slices = nib.load(fused / "fused_rgb.nii.gz").shape[2]
    assert len(list((fused / "dicom" / "fused_rgb").iterdir())) == slices
    assert str(out / "input") in printed and "registration vs the known head movement" in printed
    error = main(["demo", "--out", str(out), "--downsample", "4", *fast_options(tiny_weights_file)])
    assert error == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_batch_runs_in_process_without_dask(pet_ds4, tiny_weights_file, tmp_path, monkeypatch, capsys):
    for name in ("dask", "distributed"):  # as on a core install: importing them fails
        monkeypatch.setitem(sys.modules, name, None)
    root = tmp_path / "root"
    nifti_patient(root / "p1", pet_ds4)
    command = ["batch", str(root), "--out", str(tmp_path / "out"), *fast_options(tiny_weights_file),
               "--formats", "nifti"]
    assert main(command) == 0
    printed = capsys.readouterr()
    assert 'Dask is not installed' in printed.err and 'pip install "mixfuse-med[cluster]"' in printed.err
    assert "1 patient(s): 1 done" in printed.out
    assert main([*command, "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "--scheduler needs Dask" in capsys.readouterr().err
