"""The plan of a volume's prediction: units of chunk rows, slabs of units, and each rank's share."""

from __future__ import annotations

import pytest

from voxseg.inference.job.blocks import VolumePlan, regions, share


@pytest.mark.parametrize(
    ("shape", "unit", "slab"),
    [((256, 512, 512), 32, 64), ((128, 1024, 1024), 15, 15), ((20, 64, 64), 20, 20), ((1, 8, 8), 1, 1)],
)
def test_units_are_chunk_rows_and_slabs_whole_units(shape, unit: int, slab: int) -> None:
    plan = VolumePlan.of(shape)
    assert plan.unit_planes == unit and plan.unit_planes * plan.slab_units >= slab
    assert plan.chunks[0] == unit and plan.chunks[1:] == (min(shape[1], 256), min(shape[2], 256))
    for spans in (plan.units, plan.slabs):  # each tiles Z, in order, without gaps
        assert spans[0][0] == 0 and spans[-1][1] == shape[0]
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    unit_starts = {z0 for z0, _ in plan.units}
    assert all(z0 in unit_starts for z0, _ in plan.slabs)  # a slab's rows of chunks have one writer


def test_a_slab_holds_about_the_slab_voxels() -> None:
    plan = VolumePlan.of((256, 512, 512))
    assert plan.slabs[0] == (0, 64)  # 64 × 512² = 16.8 M voxels
    assert VolumePlan.of((36, 40, 40), 5 * 40 * 40).slabs[:2] == [(0, 5), (5, 10)]


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shares_are_contiguous_balanced_and_cover_every_unit_once(world: int) -> None:
    units = list(range(8))
    shares = [share(units, rank, world) for rank in range(world)]
    assert [u for part in shares for u in part] == units
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert all(part == list(range(part[0], part[-1] + 1)) for part in shares if part)


def test_after_a_resume_only_the_pending_units_are_shared() -> None:
    pending = [2, 3, 6, 7]
    assert [share(pending, rank, 2) for rank in range(2)] == [[2, 3], [6, 7]]
    assert regions([(64, 96), (96, 128), (192, 224)]) == [(64, 128), (192, 224)]
