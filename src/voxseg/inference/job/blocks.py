"""How the prediction of one volume is cut into work: units of whole output chunk rows, slabs of
units for the instances, and each rank's share of them.

The plan depends on the volume's shape only, never on the number of processes, so one process and
N ranks compute the same blocks and write the same bytes, and a job resumed with another number of
ranks continues the same plan. A unit is a row of output chunks (all of Y and X, `depth` planes):
the Zarr chunks of a unit are written by one rank only, so ranks write one array without locks, and
a finished unit is what the journal records.
"""

from __future__ import annotations

from dataclasses import dataclass

#: a slab labelled for instances (without its halo) holds about this many voxels
SLAB_VOXELS = 16_000_000
#: a unit is at most this many planes deep (the output chunks' depth)
UNIT_PLANES = 32
#: the output chunks' Y and X sides
CHUNK_SIDE = 256

Span = tuple[int, int]  # first Z, end Z


@dataclass(frozen=True)
class VolumePlan:
    """Units and slabs of a Z×Y×X volume."""

    shape: tuple[int, int, int]
    unit_planes: int
    slab_units: int

    @classmethod
    def of(cls, shape: tuple[int, ...], slab_voxels: int = SLAB_VOXELS) -> VolumePlan:
        """Units of up to `UNIT_PLANES` planes, fewer where planes are large (a slab then stays near
        `slab_voxels`: 15 planes of 1024²); slabs of whole units, about `slab_voxels` each."""
        z, y, x = (int(s) for s in shape)
        plane = max(1, y * x)
        unit = max(1, min(z, UNIT_PLANES, slab_voxels // plane))
        return cls((z, y, x), unit, max(1, round(slab_voxels / (plane * unit))))

    @property
    def chunks(self) -> tuple[int, int, int]:
        """The output arrays' chunks: a unit deep, so a unit's chunks have one writer."""
        return (self.unit_planes, min(self.shape[1], CHUNK_SIDE), min(self.shape[2], CHUNK_SIDE))

    @property
    def units(self) -> list[Span]:
        depth, end = self.unit_planes, self.shape[0]
        return [(z, min(z + depth, end)) for z in range(0, end, depth)]

    @property
    def slabs(self) -> list[Span]:
        depth, end = self.unit_planes * self.slab_units, self.shape[0]
        return [(z, min(z + depth, end)) for z in range(0, end, depth)]


def share(items: list[int], rank: int, world: int) -> list[int]:
    """Rank `rank`'s contiguous share of `items` (indices in order): `world` runs of equal count, so
    each rank streams its units as few, deep regions (windows at a region's faces are computed by
    both neighbours: deep regions keep that small)."""
    n = len(items)
    return items[rank * n // world : (rank + 1) * n // world]


def regions(spans: list[Span]) -> list[Span]:
    """Consecutive spans joined: the Z ranges a share streams in one pass each."""
    joined: list[Span] = []
    for z0, z1 in spans:
        if joined and joined[-1][1] == z0:
            joined[-1] = (joined[-1][0], z1)
        else:
            joined.append((z0, z1))
    return joined
