"""Objects cut by the borders of blocks labelled apart, joined into one set of ids.

A volume larger than memory (or shared by several processes) is labelled in Z slabs; an object that
crosses a cut gets an id in each slab. `stitch_tables` gives every slab a lookup table into the
volume's ids; `join_tables` does the same from the few numbers ranks exchange (each slab's id counts
and the pairs of ids facing each other across each cut, `face_pairs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse.csgraph import connected_components


def stitch_tables(
    slabs: Sequence[np.ndarray], connectivity: int = 3, min_overlap: float = 0.0
) -> list[np.ndarray]:
    """Lookup tables that give the Z slabs of one volume, labelled separately, one set of ids.

    `slabs` are consecutive, non-overlapping (Z, Y, X) label images (each with its own ids; 0 is
    background). Two objects on either side of a cut are the same object when they touch across it
    (the last plane of one slab against the first plane of the next) under `connectivity` (1: faces,
    2: and edges, 3: and corners, as in `skimage.measure.label`); this is transitive, so a U-shaped
    object cut into two pieces in one slab is rejoined through the next. With `min_overlap` > 0 a
    pair is joined only if the voxels of one lying directly across from the other cover at least
    that fraction of the smaller of their two cut faces (then only faces count, not `connectivity`):
    watershed-split neighbours that merely touch at the cut stay apart, while a nucleus cut in two
    overlaps itself almost fully. Use 0 (exact) for connected components and about 0.5 for
    watershed labels; measured on the nuclei of `label_instances` (true masks, seeds 0-5, F1 at IoU
    0.5; 0.993 for the whole volume): 2 slabs 0.964 with 0, 0.982 with 0.5; 3 slabs (16 planes each)
    0.906 with 0, 0.971 with 0.5. What remains is mostly nuclei cut near a tip, whose thin cap is
    split differently from the rest.

    Returns one table per slab: `tables[k][slab_k]` is slab k in the volume's ids, which are 1..N,
    numbered in order of first appearance along Z (slab by slab, then by the slab's own id). Each
    slab is read once to list its ids and then only at its boundary planes, so slabs may be
    memory-mapped, and the tables can relabel them one at a time as they are written.
    """
    if not slabs:
        return []
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap must be between 0 and 1, got {min_overlap}")
    shapes = {np.shape(slab)[1:] for slab in slabs}
    if any(np.ndim(slab) != 3 for slab in slabs) or len(shapes) != 1:
        raise ValueError(
            f"slabs must be (Z, Y, X) volumes with the same Y, X; got {[np.shape(s) for s in slabs]}"
        )
    counts = [np.bincount(np.asarray(slab).ravel()) for slab in slabs]  # voxels of each id, per slab
    deep = [k for k, slab in enumerate(slabs) if len(slab)]  # a slab with no planes separates nothing
    pairs = [
        (k, n, face_pairs(np.asarray(slabs[k][-1]), np.asarray(slabs[n][0]), connectivity, min_overlap))
        for k, n in zip(deep, deep[1:], strict=False)
    ]
    return join_tables(counts, pairs)


def join_tables(
    counts: Sequence[np.ndarray], pairs: Sequence[tuple[int, int, np.ndarray]]
) -> list[np.ndarray]:
    """`stitch_tables`' result from what it reads of the slabs: `counts[k]`, the voxels of each id of
    slab k (`np.bincount`), and for each cut `(k, n, face_pairs(last plane of k, first plane of n))`.
    Ranks that labelled the slabs apart send these few numbers, not the slabs."""
    offsets = np.concatenate([[0], np.cumsum([len(c) - 1 for c in counts])]).astype(np.int64)
    total = int(offsets[-1])
    present = np.zeros(total + 1, dtype=bool)
    for count, offset in zip(counts, offsets, strict=False):
        present[offset + 1 : offset + len(count)] = count[1:] > 0
    edges = np.concatenate(
        [np.empty((0, 2), dtype=np.int64), *(touching + (offsets[k], offsets[n]) for k, n, touching in pairs)]
    )
    graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(total + 1, total + 1))
    _, component = connected_components(graph, directed=False)
    ids = np.flatnonzero(present)
    # new ids follow each component's first (lowest) global id, so numbering runs along Z
    _, first, inverse = np.unique(component[ids], return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.uint32)
    rank[np.argsort(first)] = np.arange(1, len(first) + 1, dtype=np.uint32)
    table = np.zeros(total + 1, dtype=np.uint32)
    table[ids] = rank[inverse]
    return [
        np.concatenate([[0], table[offset + 1 : offset + len(count)]]).astype(np.uint32)
        for count, offset in zip(counts, offsets, strict=False)
    ]


def face_pairs(
    above: np.ndarray, below: np.ndarray, connectivity: int = 3, min_overlap: float = 0.0
) -> np.ndarray:
    """(id above, id below) pairs, unique, that are joined across one cut (two facing planes), as
    `stitch_tables` joins them."""
    if min_overlap > 0:
        both = (above > 0) & (below > 0)
        pairs, overlap = np.unique(np.stack([above[both], below[both]], axis=1), axis=0, return_counts=True)
        if len(pairs) == 0:
            return pairs.reshape(0, 2).astype(np.int64)
        face_above = np.bincount(above.ravel())[pairs[:, 0]]
        face_below = np.bincount(below.ravel())[pairs[:, 1]]
        return pairs[overlap >= min_overlap * np.minimum(face_above, face_below)].astype(np.int64)
    # the in-plane offsets a voxel reaches in the next plane: the last layer of the 3×3×3 footprint
    footprint = ndi.generate_binary_structure(3, connectivity)[2]
    found = []
    height, width = above.shape
    for dy, dx in np.argwhere(footprint) - 1:
        a = above[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
        b = below[max(0, dy) : height - max(0, -dy), max(0, dx) : width - max(0, -dx)]
        both = (a > 0) & (b > 0)
        found.append(np.stack([a[both], b[both]], axis=1))
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)
