"""Registration, resampling, normalisation and colour mapping as MONAI transforms, on synthetic studies."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from mixfuse_med.atomic import is_temporary
from mixfuse_med.color import rgb_to_luma
from mixfuse_med.errors import OutputExistsError
from mixfuse_med.io import load_volume
from mixfuse_med.io.geometry import from_sitk, to_sitk
from mixfuse_med.synthetic import brain_points, make_synthetic_study
from mixfuse_med.transforms import (
    ApplyColormap,
    ApplyColormapd,
    NormalizeFunctional,
    NormalizeFunctionald,
    NormalizeMRI,
    NormalizeMRId,
    ResampleToReference,
    ResampleToReferenced,
    RGBToLuma,
    RigidRegister,
    RigidRegisterd,
    load_transform,
    n4_bias_correct,
    register_rigid,
    save_transform,
    transform_from_meta,
)

POINTS = brain_points(1000, seed=1)


def tre(found: sitk.Transform, truth: sitk.Transform) -> float:
    """Mean distance (mm) between brain points mapped by the found and the true transform."""
    return float(np.mean([np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p)))
                          for p in POINTS]))


@pytest.fixture(scope="module")
def pet(tmp_path_factory):
    study = make_synthetic_study(tmp_path_factory.mktemp("pet"), "PET", seed=11, downsample=3,
                                 formats=("nifti",))
    mri = load_volume(study.mri_nifti, modality="MR")
    functional = load_volume(study.functional_nifti, modality="PET", suv=False)
    return study, mri, functional


@pytest.fixture(scope="module")
def spect(tmp_path_factory):
    study = make_synthetic_study(tmp_path_factory.mktemp("spect"), "SPECT", seed=10, downsample=3,
                                 formats=("nifti",))
    return study, load_volume(study.mri_nifti, modality="MR"), load_volume(study.functional_nifti,
                                                                           modality="SPECT")


@pytest.mark.parametrize("which, bound", [("pet", 1.5), ("spect", 2.5)])
def test_register_rigid_recovers_the_known_movement(which, bound, request):
    study, mri, functional = request.getfixturevalue(which)
    before = tre(sitk.Euler3DTransform(), study.true_transform)
    assert before > 5.0  # there is a real movement to undo
    found = register_rigid(to_sitk(mri), to_sitk(functional))
    assert tre(found, study.true_transform) < bound  # loose: voxels here are 6 mm (PET), 12 mm (SPECT)


def test_euler_and_geometry_initialisation_also_work(pet):
    study, mri, functional = pet
    found = register_rigid(to_sitk(mri), to_sitk(functional), transform="euler", initialization="geometry")
    assert found.GetName() == "Euler3DTransform"
    assert tre(found, study.true_transform) < 1.5


def test_bad_options_are_refused(pet):
    _, mri, functional = pet
    with pytest.raises(ValueError, match="initialization"):
        register_rigid(to_sitk(mri), to_sitk(functional), initialization="magic")
    with pytest.raises(TypeError):
        register_rigid(to_sitk(mri), to_sitk(functional), no_such_option=1)


@pytest.fixture(scope="module")
def registered(pet):
    study, mri, functional = pet
    data = RigidRegisterd("functional", fixed_key="mri")({"mri": mri, "functional": functional})
    return study, data


def test_dict_registration_keeps_the_transform_in_metadata(registered):
    study, data = registered
    record = data["functional"].meta["registration"]
    assert record["mi_after"] > record["mi_before"] > 0
    assert tre(transform_from_meta(record), study.true_transform) < 1.5
    # the volume itself is untouched by registration
    assert data["functional"].shape == load_volume(study.functional_nifti, modality="PET", suv=False).shape


def test_transform_saved_and_reapplied_gives_the_same_volume(registered, tmp_path):
    _, data = registered
    path = save_transform(data["functional"].meta["registration"], tmp_path / "pet_to_mri.tfm")
    from_meta = ResampleToReferenced("functional", ref_key="mri")(data)["functional"]
    from_file = ResampleToReference()(data["functional"], data["mri"], load_transform(path))
    np.testing.assert_allclose(from_meta.numpy(), from_file.numpy(), rtol=1e-6, atol=1e-6)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


def test_saving_a_transform_refuses_an_existing_file_unless_asked(registered, tmp_path):
    _, data = registered
    path = tmp_path / "pet_to_mri.tfm"
    path.write_text("someone else's transform")
    with pytest.raises(OutputExistsError, match="pet_to_mri.tfm"):
        save_transform(data["functional"].meta["registration"], path)
    assert path.read_text() == "someone else's transform"

    save_transform(data["functional"].meta["registration"], path, overwrite=True)
    expected = transform_from_meta(data["functional"].meta["registration"])
    np.testing.assert_allclose(load_transform(path).GetParameters(), expected.GetParameters(), atol=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pet_to_mri.tfm"]


def test_a_transform_being_written_has_a_temporary_name_readers_skip(registered, tmp_path, monkeypatch):
    _, data = registered
    seen = []

    def failing_write(transform, filename):  # record the name, write part of a file, then fail
        seen.append(Path(filename))
        Path(filename).write_text("#Insight Transform File V1.0\n")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteTransform", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        save_transform(data["functional"].meta["registration"], tmp_path / "pet_to_mri.tfm")
    (temp,) = seen
    assert is_temporary(temp) and temp.parent == tmp_path and temp.name.endswith(".tfm")
    assert list(tmp_path.iterdir()) == []  # nothing published, the temporary removed


def test_array_registration_matches_its_dict_twin_and_repeats_exactly(pet, registered):
    _, mri, functional = pet
    out = RigidRegister()(functional, mri)
    np.testing.assert_allclose(out.meta["registration"]["parameters"],
                               registered[1]["functional"].meta["registration"]["parameters"], atol=1e-9)


def test_resampled_functional_lies_on_the_mri_grid_in_its_units(pet):
    study, mri, functional = pet
    functional = functional.clone()
    functional.meta["units"] = "BQML"
    out = ResampleToReference()(functional, mri, study.true_transform)
    assert out.shape == mri.shape
    np.testing.assert_allclose(np.asarray(out.affine), np.asarray(mri.affine))
    assert out.meta["units"] == "BQML" and out.meta["modality"] == "PT"
    # aligned with the truth: the functional's hot voxels sit in the MRI's brain
    brain = mri.numpy() > 0
    hot = out.numpy() > 0.5 * float(out.max())
    assert (hot & brain).sum() / hot.sum() > 0.97
    # linear interpolation keeps the value range (no overshoot, no rescaling)
    assert float(out.max()) <= float(functional.max()) * (1 + 1e-6)
    assert float(out.max()) > 0.8 * float(functional.max())


def test_resampling_onto_its_own_grid_changes_nothing(pet):
    _, _, functional = pet
    same = ResampleToReference()(functional, functional)
    np.testing.assert_allclose(same.numpy(), functional.numpy(), rtol=1e-5, atol=1e-3)


def test_voxels_outside_the_functional_field_of_view_are_zero(pet):
    _, mri, functional = pet
    shift = sitk.TranslationTransform(3, (400.0, 0.0, 0.0))  # every MRI point maps outside the PET
    out = ResampleToReference()(functional, mri, shift)
    assert float(out.abs().max()) == 0.0


# Intensity ------------------------------------------------------------------------------------------


def test_mri_normalised_to_unit_range_by_percentiles(pet):
    _, mri, _ = pet
    out = NormalizeMRId("mri", upper=99.0)({"mri": mri})["mri"]
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    window = out.meta["intensity_window"]
    expected_high = np.percentile(mri.numpy()[mri.numpy() > 0], 99.0)
    assert window["high"] == pytest.approx(expected_high)
    assert (out.numpy() >= 1.0).mean() == pytest.approx((mri.numpy() >= expected_high).mean(), abs=1e-3)
    assert out.dtype == torch.float32 and isinstance(out, MetaTensor)
    np.testing.assert_allclose(np.asarray(out.affine), np.asarray(mri.affine))


def test_pet_in_suv_uses_the_suv_window(pet):
    _, _, functional = pet
    suv = functional.clone()
    suv.meta["units"] = "SUVbw"
    suv = suv * (6.0 / float(suv.max()))
    out = NormalizeFunctional(suv_window=(0.0, 4.0))(suv)
    assert out.meta["intensity_window"]["method"] == "SUV window"
    np.testing.assert_allclose(out.numpy(), np.clip(suv.numpy() / 4.0, 0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="units"):
        NormalizeFunctional(mode="suv")(functional.clone())  # not in SUV
    plain = NormalizeFunctional(mode="percentile")(suv.numpy())  # arrays work too
    assert float(plain.max()) == 1.0 and float(plain.min()) == 0.0


def test_spect_normalised_by_percentiles(spect):
    _, _, functional = spect
    out = NormalizeFunctionald("spect")({"spect": functional})["spect"]
    assert 0.0 <= float(out.min()) and float(out.max()) == 1.0
    assert out.meta["intensity_window"]["low"] == 0.0
    assert out.meta["intensity_window"]["high"] == pytest.approx(
        np.percentile(functional.numpy()[functional.numpy() > 0], 99.5))
    assert float((out.numpy() == 0).mean()) > 0.2  # background stays black


def test_n4_removes_a_smooth_bias_field(pet):
    _, mri, _ = pet
    x = np.linspace(-1, 1, mri.shape[1])[:, None, None]
    field = (1.0 + 0.35 * x) * np.ones(mri.shape[1:])
    biased = MetaTensor(mri * torch.as_tensor(field[None], dtype=torch.float32), meta=dict(mri.meta))
    corrected = n4_bias_correct(biased)
    tissue = mri.numpy()[0] > np.percentile(mri.numpy()[0][mri.numpy()[0] > 0], 60)  # mostly white matter

    def left_right_ratio(v):
        v = np.asarray(v)[0]
        half = v.shape[0] // 2
        return v[:half][tissue[:half]].mean() / v[half:][tissue[half:]].mean()

    truth = left_right_ratio(mri)
    assert abs(left_right_ratio(corrected) - truth) < 0.5 * abs(left_right_ratio(biased) - truth)
    out = NormalizeMRI(n4=True)(biased)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 and out.meta["n4_bias_corrected"]


# Colour ---------------------------------------------------------------------------------------------


def test_colour_mapping_gives_rgb_and_its_luma(spect):
    _, _, functional = spect
    scaled = NormalizeFunctional()(functional)
    out = ApplyColormapd("spect")({"spect": scaled})
    rgb, luma = out["spect_rgb"], out["spect_luma"]
    assert rgb.shape == (3, *scaled.shape[1:]) and luma.shape == scaled.shape
    assert 0.0 <= float(rgb.min()) and float(rgb.max()) <= 1.0
    np.testing.assert_allclose(luma[0].numpy(), rgb_to_luma(rgb.numpy().transpose(1, 2, 3, 0)), atol=1e-6)
    assert rgb.meta["colormap"] == "spect"  # picked from the modality
    assert out["spect"] is scaled
    np.testing.assert_allclose(np.asarray(rgb.affine), np.asarray(functional.affine))
    # zero activity is black, the brightest voxel the hot end of the map
    background = scaled[0].numpy() == 0
    assert float(rgb.numpy()[:, background].max()) == 0.0


def test_colour_map_by_name_and_errors(pet):
    _, _, functional = pet
    scaled = NormalizeFunctional(mode="percentile")(functional)
    hot = ApplyColormap("hot")(scaled)
    np.testing.assert_allclose(RGBToLuma()(hot).shape, scaled.shape)
    with pytest.raises(ValueError, match="unknown colour map"):
        ApplyColormap("rainbow")
    with pytest.raises(ValueError, match="no colour map given"):
        ApplyColormap()(MetaTensor(torch.zeros(1, 2, 2, 2)))


def test_whole_chain_composes(pet):
    study, mri, functional = pet
    chain = Compose([
        RigidRegisterd("pet", fixed_key="mri"),
        ResampleToReferenced("pet", ref_key="mri"),
        NormalizeMRId("mri"),
        NormalizeFunctionald("pet", mode="percentile"),
        ApplyColormapd("pet", name="pet"),
    ])
    out = chain({"mri": mri, "pet": functional})
    assert out["pet_rgb"].shape == (3, *mri.shape[1:])
    for key in ("mri", "pet", "pet_luma"):
        assert 0.0 <= float(out[key].min()) and float(out[key].max()) <= 1.0


def test_geometry_survives_from_sitk_to_sitk(pet):
    _, mri, _ = pet
    image = to_sitk(mri)
    back = from_sitk(image)
    np.testing.assert_allclose(np.asarray(back.affine), np.asarray(mri.affine))
