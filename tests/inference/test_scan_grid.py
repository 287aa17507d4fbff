"""The way from a scan's grid to the model's and back: properties of the grid maths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from inference_phantoms import grid, rotation
from nibabel.orientations import apply_orientation as nib_apply
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, ornt_transform

from fedshift.data.nifti import reorient_to_ras
from fedshift.inference.grid import model_grid, to_file_order, to_model, to_scan, voxel_sizes


def _world(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    idx = np.indices(shape).reshape(3, -1).astype(float)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).reshape(3, *shape)


def test_same_spacing_is_the_identity() -> None:
    affine, shape = grid((2.0, 2.0, 2.0))
    g = model_grid(shape, affine, (2.0, 2.0, 2.0))
    assert g.identity and g.shape == tuple(shape)
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    assert np.array_equal(to_model(g, image), image)
    assert np.array_equal(to_scan(g, image), image)


@pytest.mark.parametrize("spacing", [(0.9, 0.9, 3.0), (1.0, 1.0, 1.0), (3.0, 2.5, 1.2)])
def test_model_grid_has_the_model_spacing_and_the_scan_directions(spacing) -> None:
    directions = rotation(2, 25) @ rotation(0, 15)
    affine, shape = grid(spacing, fov_mm=40, directions=directions)
    g = model_grid(shape, affine, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(voxel_sizes(g.affine), 2.0)
    np.testing.assert_allclose(g.affine[:3, :3] / 2.0, directions, atol=1e-12)
    # the model grid covers the scan's field of view about the same centre
    centre_scan = affine @ np.r_[(np.asarray(shape) - 1) / 2, 1]
    centre_model = g.affine @ np.r_[(np.asarray(g.shape) - 1) / 2, 1]
    np.testing.assert_allclose(centre_scan, centre_model, atol=1e-9)
    assert np.all(np.asarray(g.shape) * 2.0 >= np.asarray(shape) * np.asarray(spacing) - 1e-6)


def test_a_linear_field_survives_both_ways_at_the_right_place() -> None:
    """Resampling a linear function of world position gives that function at the model
    voxels' world positions (the affine and the interpolation agree), and back."""
    affine, shape = grid((0.9, 0.9, 3.0), fov_mm=30, directions=rotation(1, 20))
    coeffs = np.array([0.3, -0.2, 0.5])
    field = np.tensordot(coeffs, _world(affine, shape), axes=1).astype(np.float32)
    g = model_grid(shape, affine, (2.0, 2.0, 2.0))
    on_model = to_model(g, field)
    expected = np.tensordot(coeffs, _world(g.affine, g.shape), axes=1)
    inside = tuple(slice(2, n - 2) for n in g.shape)  # borders extrapolate by edge values
    np.testing.assert_allclose(on_model[inside], expected[inside], atol=1e-3)
    back = to_scan(g, np.tensordot(coeffs, _world(g.affine, g.shape), axes=1))
    inner = tuple(slice(3, n - 3) for n in shape)
    np.testing.assert_allclose(back[inner], field[inner], atol=1e-3)


ORIENTATIONS = ["RAS", "LPS", "LAS", "PIR", "SLA", "ILP"]


@pytest.mark.parametrize("codes", ORIENTATIONS)
def test_file_order_undoes_the_reorientation(codes: str) -> None:
    rng = np.random.default_rng(1)
    ras_affine, ras_shape = grid((0.9, 1.1, 3.0), fov_mm=12)
    data_ras = rng.normal(size=ras_shape).astype(np.float32)
    back = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(tuple(codes)))
    stored = nib_apply(data_ras, back)
    file_affine = ras_affine @ inv_ornt_aff(back, data_ras.shape)
    read, read_affine, _ = reorient_to_ras(stored, file_affine)  # what read_volume does
    np.testing.assert_allclose(read_affine, ras_affine, atol=1e-9)
    out = to_file_order(read, read_affine, file_affine)
    assert out.shape == stored.shape and np.array_equal(out, stored)


def test_file_order_refuses_an_affine_of_another_grid() -> None:
    affine, shape = grid((1.0, 1.0, 1.0), fov_mm=8)
    other = affine.copy()
    other[0, 3] += 5.0
    with pytest.raises(ValueError, match="does not map back"):
        to_file_order(np.zeros(shape), affine, other)


def test_every_axis_permutation_and_flip_round_trips() -> None:
    affine, shape = grid((1.0, 2.0, 3.0), fov_mm=9)
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((1, -1), repeat=3):
            ornt = np.array([[p, f] for p, f in zip(perm, flips, strict=True)], dtype=float)
            stored = nib_apply(data, ornt)
            file_affine = affine @ inv_ornt_aff(ornt, data.shape)
            read, read_affine, _ = reorient_to_ras(stored, file_affine)
            assert np.array_equal(to_file_order(read, read_affine, file_affine), stored)
