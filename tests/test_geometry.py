"""RAS <-> LPS handled once: round trips through SimpleITK keep every voxel's world position."""

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from scipy.spatial.transform import Rotation

from mixfuse_med.io.geometry import (
    axis_closest_to,
    dicom_slice_geometry,
    from_sitk,
    sitk_to_affine,
    to_sitk,
)


def oblique_affine(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    affine = np.eye(4)
    rotation = Rotation.from_euler("xyz", rng.uniform(-25, 25, 3), degrees=True).as_matrix()
    affine[:3, :3] = rotation @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = rng.uniform(-100, 100, 3)
    return affine


def test_world_positions_survive_sitk_round_trip():
    affine = oblique_affine()
    data = torch.arange(5 * 6 * 7, dtype=torch.float32).reshape(1, 5, 6, 7)
    volume = MetaTensor(data, affine=torch.as_tensor(affine))
    image = to_sitk(volume)
    assert image.GetSize() == (5, 6, 7)
    for index in [(0, 0, 0), (4, 5, 6), (1, 3, 2)]:
        lps = np.asarray(image.TransformIndexToPhysicalPoint(index))
        ras = affine @ np.array([*index, 1.0])
        np.testing.assert_allclose(lps, ras[:3] * [-1, -1, 1], atol=1e-9)
        assert image[index] == data[0][index].item()
    back = from_sitk(image, {"modality": "MR"})
    np.testing.assert_allclose(np.asarray(back.affine), affine, atol=1e-9)
    assert torch.equal(back.as_tensor(), data)
    assert back.meta["modality"] == "MR"


def test_rgb_volume_becomes_vector_image():
    affine = oblique_affine(1)
    rgb = np.random.default_rng(0).integers(0, 255, (3, 4, 5, 6)).astype(np.uint8)
    image = to_sitk(rgb, affine)
    assert image.GetNumberOfComponentsPerPixel() == 3
    assert image[(1, 2, 3)] == tuple(int(v) for v in rgb[:, 1, 2, 3])
    back = from_sitk(image, dtype=np.uint8)
    assert back.shape == (3, 4, 5, 6) and np.array_equal(back.numpy(), rgb)


def test_nifti_read_by_sitk_matches_nibabel_affine(tmp_path):
    import nibabel as nib

    affine = oblique_affine(2)
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), affine), tmp_path / "v.nii.gz")
    np.testing.assert_allclose(sitk_to_affine(sitk.ReadImage(str(tmp_path / "v.nii.gz"))), affine,
                               atol=1e-5)


def test_axis_closest_to_superior():
    axial = np.diag([1.0, 1.0, 3.0, 1.0])
    assert axis_closest_to(axial) == 2
    coronal = np.array([[1.0, 0, 0, 0], [0, 0, 2.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    assert axis_closest_to(coronal) == 1


def test_dicom_slice_geometry_places_pixels_like_the_affine():
    affine = oblique_affine(3)
    geo = dicom_slice_geometry(affine, (5, 6, 7))
    row_dir, col_dir = np.array(geo.image_orientation[:3]), np.array(geo.image_orientation[3:])
    # DICOM: pixel (r, c) of slice k sits at IPP + c * colspacing * row_dir + r * rowspacing * col_dir.
    r, c, k = 4, 3, 5
    lps = (np.array(geo.positions[k]) + c * geo.pixel_spacing[1] * row_dir
           + r * geo.pixel_spacing[0] * col_dir)
    ras = affine @ np.array([c, r, k, 1.0])
    np.testing.assert_allclose(lps, ras[:3] * [-1, -1, 1], atol=1e-9)
    assert np.isclose(geo.slice_spacing, 2.5)
