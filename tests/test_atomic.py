"""Outputs appear whole or not at all, and are never overwritten unless asked."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import pydicom.dataset
import pytest
from export_fixtures import make_study

from mixfuse_med.atomic import (
    TEMP_PREFIX,
    _host_tag,
    atomic_path,
    clean_stale_temporaries,
    temporary_name,
)
from mixfuse_med.errors import ExportError, OutputExistsError
from mixfuse_med.export import export_study, is_temporary

WORKTREE = Path(__file__).resolve().parents[1]


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not is_temporary(p)) if folder.exists() else []


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_temporary(p)) if folder.exists() else []


def test_existing_output_is_refused_before_anything_is_written(tmp_path):
    study = make_study(tmp_path, source="dicom")
    out = tmp_path / "out"
    (out / "dicom" / "pet_on_mri").mkdir(parents=True)
    (out / "dicom" / "pet_on_mri" / "mine.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="pet_on_mri"):
        export_study(study, out)
    assert (out / "dicom" / "pet_on_mri" / "mine.txt").read_text() == "keep me"
    assert _visible(out) == ["dicom"] and _visible(out / "dicom") == ["pet_on_mri"]


def test_overwrite_replaces_whole_outputs(tmp_path):
    study = make_study(tmp_path, source="dicom")
    out = tmp_path / "out"
    first = export_study(study, out)
    (first["functional_dicom"] / "stray.dcm").write_bytes(b"old")
    first["fused_luma_nifti"].write_bytes(b"not a nifti")
    second = export_study(study, out, overwrite=True)
    assert second == first
    assert "stray.dcm" not in _visible(second["functional_dicom"])
    assert len(_visible(second["functional_dicom"])) == study.mri.shape[3]
    assert nib.load(second["fused_luma_nifti"]).shape == tuple(study.mri.shape[1:])
    assert not _temporaries(out) and not _temporaries(out / "dicom")


def test_failure_half_way_through_a_series_leaves_nothing(tmp_path, monkeypatch):
    study = make_study(tmp_path, source="dicom")
    out = tmp_path / "out"
    original, calls = pydicom.dataset.Dataset.save_as, []

    def failing_save_as(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", failing_save_as)
    with pytest.raises(ExportError, match="No space left"):
        export_study(study, out, formats=("dicom",))
    assert len(calls) == 3
    assert _visible(out / "dicom") == [] and not _temporaries(out / "dicom")


def test_failure_while_writing_nifti_leaves_no_file(tmp_path, monkeypatch):
    study = make_study(tmp_path, source="nifti")
    out = tmp_path / "out"

    def half_save(image, filename):
        Path(filename).write_bytes(b"\x00" * 100)  # a truncated file under the temporary name
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(nib, "save", half_save)
    with pytest.raises(ExportError, match="Input/output error"):
        export_study(study, out, formats=("nifti",))
    assert list(out.iterdir()) == []


KILLED_EXPORT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path[:0] = [{worktree!r}, {tests!r}]
    import pydicom.dataset
    from export_fixtures import make_study
    from mixfuse_med.export import export_study

    study = make_study(Path({tmp!r}), source="dicom")
    original, calls = pydicom.dataset.Dataset.save_as, []

    def save_then_die(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # mid-way through the first DICOM series
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    pydicom.dataset.Dataset.save_as = save_then_die
    export_study(study, Path({out!r}))
""")


def test_killed_export_leaves_only_recognisable_temporaries_cleaned_next_run(tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "killed_export.py"
    script.write_text(KILLED_EXPORT.format(worktree=str(WORKTREE), tests=str(WORKTREE / "tests"),
                                           tmp=str(tmp_path), out=str(out)))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]

    # NIfTI outputs (written before the kill) are complete; no DICOM series is visible, only a temporary
    assert _visible(out) == ["dicom", "fused_luma.nii.gz", "fused_rgb.nii.gz", "pet_on_mri.nii.gz"]
    assert nib.load(out / "fused_luma.nii.gz").get_fdata().shape == (10, 8, 5)
    assert _visible(out / "dicom") == []
    (partial,) = _temporaries(out / "dicom")
    assert partial.name.startswith(TEMP_PREFIX) and partial.name.endswith(".fused_rgb")
    assert len(list(partial.iterdir())) == 2  # two slices were written before the kill

    study = make_study(tmp_path, source="dicom")
    paths = export_study(study, out, overwrite=True)
    assert not _temporaries(out) and not _temporaries(out / "dicom")
    assert all(p.exists() for p in paths.values())
    assert len(list(paths["fused_rgb_dicom"].iterdir())) == 5


def test_only_temporaries_of_dead_processes_of_this_host_are_cleaned(tmp_path):
    final = tmp_path / "series"
    mine = temporary_name(final)  # this (live) process
    mine.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    dead = tmp_path / f"{TEMP_PREFIX}{_host_tag()}.{int(finished.stdout)}.abcd1234.series"
    dead.mkdir()
    elsewhere = tmp_path / f"{TEMP_PREFIX}00000000.1.abcd1234.series"
    elsewhere.write_text("another host's partial output")
    assert clean_stale_temporaries(tmp_path) == [dead]
    assert mine.exists() and elsewhere.exists() and not dead.exists()


@pytest.mark.parametrize("folder", [False, True])
def test_output_made_meanwhile_by_someone_else_is_not_replaced(tmp_path, folder):
    final = tmp_path / "result"
    theirs = final / "b.dcm" if folder else final
    with pytest.raises(OutputExistsError):
        with atomic_path(final, folder=folder) as temp:
            (temp / "a.dcm" if folder else temp).write_text("mine")
            theirs.parent.mkdir(exist_ok=True)  # another process publishes first
            theirs.write_text("theirs")
    assert theirs.read_text() == "theirs"
    assert not _temporaries(tmp_path)
