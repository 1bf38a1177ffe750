"""Which rank computes what of a volume's windows.

Each rank takes a contiguous share of the pending units, balanced by the rows of windows it must
compute: a share streams each of its regions from the first row touching it, or, where a stopped
stream left a checkpoint at the region's first unit, from the row after the checkpoint. A row that
several ranks' regions touch is computed once, in parts, and exchanged (`shared_windows`); each
part is also kept in the journal, so a resumed job does not compute it again.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxseg.inference.job.blocks import Span, regions
from voxseg.inference.job.journal import Journal


@dataclass(frozen=True)
class Restart:
    """Where a stopped stream can continue: unit `unit`'s planes are final up to `final` (their CRCs
    so far in `crc`), and rows from `next_row` (padded Z) on are still to add."""

    unit: int
    final: int
    next_row: int
    crc: dict[str, int]


@dataclass(frozen=True)
class Grid:
    """The Z starts of the window grid's rows (padded Z), the window's depth and the padding before Z."""

    rows: list[int]
    depth: int
    before: int

    def needed(self, region: Span, restart: Restart | None = None) -> list[int]:
        """The rows a stream of `region` computes."""
        first, end = region[0] + self.before, region[1] + self.before
        lo = bisect.bisect_right(self.rows, first - self.depth)
        if restart is not None:
            lo = max(lo, bisect.bisect_left(self.rows, restart.next_row))
        return self.rows[lo : bisect.bisect_left(self.rows, end)]


def stream_regions(
    units: list[Span], part: list[int], restarts: dict[int, Restart]
) -> list[tuple[Span, list[int], Restart | None]]:
    """(region, its units, the restart of its first unit if any) of one share."""
    found = []
    for z0, z1 in regions([units[i] for i in part]):
        inside = [i for i in part if z0 <= units[i][0] < z1]
        found.append(((z0, z1), inside, restarts.get(inside[0])))
    return found


def balanced_shares(
    units: list[Span], pending: list[int], restarts: dict[int, Restart], grid: Grid, world: int
) -> list[list[int]]:
    """`world` contiguous shares of `pending` whose largest needs the fewest rows (the smallest
    budget for which cutting greedily makes at most `world` shares)."""

    def cost(part: list[int]) -> int:
        return sum(
            len(grid.needed(region, restart)) for region, _, restart in stream_regions(units, part, restarts)
        )

    def cut(budget: int) -> list[list[int]]:
        parts: list[list[int]] = [[]]
        for unit in pending:
            if parts[-1] and cost([*parts[-1], unit]) > budget:
                parts.append([])
            parts[-1].append(unit)
        return parts

    low, high = 0, cost(pending)
    while low < high:
        middle = (low + high) // 2
        if len(cut(middle)) <= world:
            high = middle
        else:
            low = middle + 1
    parts = cut(high) if pending else []
    return parts + [[] for _ in range(world - len(parts))]


def shared_windows(
    shares: list[list[int]],
    units: list[Span],
    restarts: dict[int, Restart],
    grid: Grid,
    windows_in: Callable[[int], int],
    rank: int,
    compute: Callable[[list[tuple[int, int]]], dict[tuple[int, int], np.ndarray]],
    gather: Callable[[Any], list[Any]],
    journal: Journal,
) -> dict[tuple[int, int], np.ndarray]:
    """The windows of the rows this rank's share needs that were computed before (kept in the
    journal) or that another share needs too: each such row computed in parts by the ranks that need
    it, saved, and exchanged. {(row, index in the row): probability}."""
    needs: dict[int, list[int]] = {}
    for r, part in enumerate(shares):
        touched = {
            row
            for region, _, restart in stream_regions(units, part, restarts)
            for row in grid.needed(region, restart)
        }
        for row in sorted(touched):
            needs.setdefault(row, []).append(r)
    mine = {row for row, ranks in needs.items() if rank in ranks}
    saved = journal.saved_windows(mine)
    todo: list[tuple[int, int]] = []
    for row, ranks in sorted(needs.items()):
        if len(ranks) > 1 and rank in ranks:
            k, n = ranks.index(rank), windows_in(row)
            todo += [
                (row, i)
                for i in range(k * n // len(ranks), (k + 1) * n // len(ranks))
                if (row, i) not in saved
            ]
    outputs = compute(todo)
    if outputs:
        journal.save_windows(outputs)
    received = {key: value for part in gather(outputs) for key, value in part.items() if key[0] in mine}
    return {**saved, **received}
