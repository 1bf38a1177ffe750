"""Which planes of a predicted mask the user has reviewed in napari, and the sparse labels they make.

The user corrects a binary mask Labels layer with napari's own label tools on a few 2D planes (along
any axis) or says "this plane is right"; a fine-tune then trains on exactly those planes. No Qt widgets
here: napari layers and events only (the panel is in `review_panel`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from napari.layers import Labels
from napari.settings import get_settings
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.key_bindings import USER_KEYMAP, coerce_keybinding
from psygnal import Signal

from voxseg.napari.finetune import BACKGROUND, FOREGROUND
from voxseg.napari.output_layers import OWNER_KEY

AXIS_NAMES = ("Z", "Y", "X")
#: the viewer key that marks the plane shown as right
REVIEW_KEY = "Shift-R"
#: `layer.metadata[OWNER_KEY]` of the overlay, so the Predict widget never offers it as an input
OVERLAY_OWNER = "review overlay"

How = Literal["edited", "marked"]


@dataclass(frozen=True, order=True)
class Plane:
    """A plane of the volume: `axis` 0/1/2 (Z/Y/X of the data array) and the index along it."""

    axis: int
    index: int

    def __str__(self) -> str:
        return f"{AXIS_NAMES[self.axis]} {self.index}"

    @property
    def key(self) -> tuple[slice | int, ...]:
        """Index of the plane in a Z×Y×X array (selects a 2D array)."""
        return (slice(None),) * self.axis + (self.index,)


def _changes(atom: Any, shape: tuple[int, ...]) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The voxels one paint-event atom changed (an index array per axis) and their new values.

    Brush, fill and polygon atoms carry a bounding box (`slice_key`), a `mask` of the changed voxels in
    it (None when all changed) and one `new_value`; `data_setitem` atoms are `(indices, old, new)`.
    """
    if hasattr(atom, "slice_key"):
        axes = [np.arange(size)[k] for k, size in zip(atom.slice_key, shape, strict=True)]
        box = tuple(len(a) for a in axes)
        changed = np.ones(box, bool) if atom.mask is None else np.asarray(atom.mask).reshape(box)
        coords = tuple(a[i] for a, i in zip(axes, np.nonzero(changed), strict=True))
        return coords, np.full(coords[0].shape, atom.new_value)
    indices, _, values = atom
    arrays = np.broadcast_arrays(*(np.asarray(i) for i in indices))
    coords = tuple(i.ravel() % size for i, size in zip(arrays, shape, strict=True))
    return coords, np.broadcast_to(np.asarray(values), arrays[0].shape).ravel()


def _checked(layer: Labels) -> Labels:
    if layer.ndim != 3:
        raise ValueError(f"a review needs a 3D Labels layer, not {layer.ndim}D ({layer.name!r})")
    return layer


class PlaneReview:
    """The reviewed planes of a 3D mask Labels layer, an overlay showing them, and the user's truth on them.

    A plane is reviewed when the user edits it or marks it right. An edit's plane: in 2D display, the
    plane shown when the edit touches it; otherwise the one index along some axis an edit is confined
    to (along several: a plane already reviewed, else the first in the viewer's order). In 3D display
    an edit that spans many planes marks no plane: a plane must be seen to be reviewed.

    The user's truth on a plane is a copy taken when it is marked, updated with each later edit's
    changes (taken from the paint event: napari fires it before writing an edit made outside a mouse
    stroke). Undo and redo fire no paint event: marking the plane again after one refreshes its truth.
    """

    changed = Signal()

    def __init__(self, viewer: Any, layer: Labels) -> None:
        self.viewer = viewer
        self.layer = _checked(layer)
        self._how: dict[Plane, How] = {}
        self._truth: dict[Plane, np.ndarray] = {}
        self._key_viewer: Any = None
        layer.events.paint.connect(self._on_paint)
        self.overlay = self._add_overlay()

    def _add_overlay(self) -> Labels:
        """A Labels layer below the mask, not editable, where reviewed planes are 1; the selection is kept
        so the user's paint still goes to the mask."""
        layers = self.viewer.layers
        selected = set(layers.selection)
        overlay = Labels(
            np.zeros(self.layer.data.shape, np.uint8),
            name=f"{self.layer.name} reviewed",
            scale=self.layer.scale,
            translate=self.layer.translate,
            metadata={OWNER_KEY: OVERLAY_OWNER},
            opacity=0.25,
            colormap=DirectLabelColormap(color_dict={None: "transparent", 1: "cyan"}),
        )
        overlay.editable = False
        layers.insert(layers.index(self.layer), overlay)
        layers.selection.clear()
        layers.selection.update(selected)
        return overlay

    @property
    def planes(self) -> list[Plane]:
        return sorted(self._how)

    def how(self, plane: Plane) -> How:
        """How a plane was reviewed: "edited", or "marked" right without an edit; KeyError if not."""
        return self._how[plane]

    def layer_axes(self, world_axes: Iterable[int]) -> list[int]:
        """The layer's axes among world axes, in their order (a layer fills the viewer's last dims)."""
        offset = self.viewer.dims.ndim - self.layer.ndim
        return [a - offset for a in world_axes if a >= offset]

    def current_plane(self) -> Plane | None:
        """The plane shown now, or None in 3D display or outside the volume.

        The index comes from the world point, not `dims.current_step`, which counts steps of the
        finest layer and so is no data index when layers have different scales.
        """
        dims = self.viewer.dims
        axes = self.layer_axes(dims.not_displayed)
        if dims.ndisplay != 2 or len(axes) != 1:
            return None
        axis = axes[0]
        index = round(float(self.layer.world_to_data(dims.point)[axis]))
        return Plane(axis, index) if 0 <= index < self.layer.data.shape[axis] else None

    def mark_current(self) -> Plane | None:
        """Mark the plane shown as right ("marked"); None when no 2D plane of the volume is shown."""
        plane = self.current_plane()
        if plane is not None:
            self.mark(plane)
        return plane

    def mark(self, plane: Plane, how: How = "marked") -> None:
        """Review a plane and keep its labels as the user's truth; "edited" wins over "marked"."""
        if how not in ("edited", "marked"):
            raise ValueError(f'how must be "edited" or "marked", not {how!r}')
        if plane.axis not in (0, 1, 2) or not 0 <= plane.index < self.layer.data.shape[plane.axis]:
            raise ValueError(f"{plane!r} is outside the volume {self.layer.data.shape}")
        self._how[plane] = "edited" if "edited" in (how, self._how.get(plane)) else how
        self._truth[plane] = np.array(self.layer.data[plane.key])
        self._draw([plane])
        self.changed.emit()

    def unmark(self, plane: Plane) -> None:
        if self._how.pop(plane, None) is None:
            return
        del self._truth[plane]
        self.overlay.data[plane.key] = 0
        self._draw([p for p in self._how if p.axis != plane.axis])  # the lines they share with it
        self.changed.emit()

    def clear(self) -> None:
        self._how.clear()
        self._truth.clear()
        self.overlay.data[...] = 0
        self.overlay.refresh()
        self.changed.emit()

    def _draw(self, planes: Iterable[Plane]) -> None:
        for plane in planes:
            self.overlay.data[plane.key] = 1
        self.overlay.refresh()

    def _on_paint(self, event: Any) -> None:
        """Record the plane(s) one stroke (napari fires once per stroke) edited, and keep the truth of
        every reviewed plane it changed (planes on other axes share lines with it)."""
        changes = [_changes(atom, self.layer.data.shape) for atom in event.value]
        current = self.current_plane()
        order = self.layer_axes(self.viewer.dims.order)
        edited = set()
        for coords, _ in changes:
            if current is not None and (coords[current.axis] == current.index).any():
                edited.add(current)
                continue
            confined = [Plane(a, int(c[0])) for a in order if (c := coords[a]).size and (c == c[0]).all()]
            if confined:  # a line or a voxel: a plane already reviewed, else the first in display order
                edited.add(next((p for p in confined if p in self._how), confined[0]))
        for plane in edited:
            self._how[plane] = "edited"
        changed = [p for p in self._how if any((c[p.axis] == p.index).any() for c, _ in changes)]
        for plane in changed:
            truth = np.array(self.layer.data[plane.key])
            for coords, values in changes:  # napari may fire before writing (an edit outside a stroke)
                on = coords[plane.axis] == plane.index
                truth[tuple(c[on] for a, c in enumerate(coords) if a != plane.axis)] = values[on]
            self._truth[plane] = truth
        if edited:
            self._draw(edited)
        if changed:
            self.changed.emit()

    def sparse_labels(self) -> np.ndarray:
        """uint8 labels for a fine-tune, read with `finetune.SPARSE`: 0 off the reviewed planes, then
        `BACKGROUND` or `FOREGROUND` on them."""
        sparse = np.zeros(self.layer.data.shape, np.uint8)
        for plane in self._how:
            sparse[plane.key] = np.where(np.asarray(self.layer.data[plane.key]) > 0, FOREGROUND, BACKGROUND)
        return sparse

    def reviewed_summary(self) -> dict[str, list[int]]:
        """The reviewed planes per axis, for a JSON record: {"Z": [12, 25], "X": [40]}."""
        summary: dict[str, list[int]] = {}
        for plane in self.planes:
            summary.setdefault(AXIS_NAMES[plane.axis], []).append(plane.index)
        return summary

    def set_layer(self, layer: Labels) -> None:
        """Follow a new mask layer (a re-prediction of the same volume); the planes and the user's truth
        on them stay: `restore_truth()` writes that truth into it."""
        if _checked(layer).data.shape != self.layer.data.shape:
            raise ValueError(f"the new layer's shape {layer.data.shape} is not {self.layer.data.shape}")
        self.layer.events.paint.disconnect(self._on_paint)
        self.layer = layer
        layer.events.paint.connect(self._on_paint)
        self.overlay.name = f"{layer.name} reviewed"
        self.overlay.scale, self.overlay.translate = layer.scale, layer.translate
        self.changed.emit()

    def restore_truth(self) -> None:
        """Write the user's truth back into the reviewed planes (after the layer's data was replaced by
        a new prediction), so they still show the user's corrections."""
        for plane, truth in self._truth.items():
            self.layer.data[plane.key] = truth
        self.layer.refresh()
        self.changed.emit()

    def bind_key(self, viewer: Any = None) -> bool:
        """Bind Shift-R on the viewer (the review's by default) to `mark_current`; False, binding
        nothing, when napari's shortcuts, the user's or the viewer's keymaps or a Labels layer's
        (which win over the viewer's when that layer is active) already use it."""
        viewer = self.viewer if viewer is None else viewer
        key = coerce_keybinding(REVIEW_KEY)
        shortcuts = get_settings().shortcuts.shortcuts.values()
        keymaps = [USER_KEYMAP, viewer.keymap, self.layer.keymap]
        keymaps += [getattr(cls, "class_keymap", {}) for cls in (*type(viewer).__mro__, *Labels.__mro__)]
        if any(str(key) in map(str, keys) for keys in shortcuts) or any(key in k for k in keymaps):
            return False
        viewer.bind_key(REVIEW_KEY, self._on_key)
        self._key_viewer = viewer
        return True

    def _on_key(self, viewer: Any) -> None:
        self.mark_current()

    def close(self) -> None:
        """Stop recording: disconnect from the layer, remove the overlay, unbind the key if still ours."""
        self.layer.events.paint.disconnect(self._on_paint)
        if self.overlay in self.viewer.layers:
            self.viewer.layers.remove(self.overlay)
        if self._key_viewer is not None:
            key = coerce_keybinding(REVIEW_KEY)
            if self._key_viewer.keymap.get(key) == self._on_key:
                self._key_viewer.bind_key(REVIEW_KEY, None)
            self._key_viewer = None
