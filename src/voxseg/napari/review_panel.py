"""The Review box: the planes of a predicted mask the user has reviewed (see `review.PlaneReview`), a
button to mark the plane shown as right, and a way back to any reviewed plane or to unmark it.

The Predict widget attaches a review after a prediction and adds its "Fine-tune" button to `actions`.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from voxseg.napari.review import Plane, PlaneReview

HELP = (
    "Correct the mask with napari's label tools on any plane, or press Shift-R / the button when a plane "
    "is right; reviewed planes train the fine-tune."
)
#: pixels: about six entries, then it scrolls (an empty list would otherwise fill the dock)
LIST_HEIGHT = 110
HOW_TEXT = {"edited": "edited", "marked": "marked right"}


class ReviewPanel(QGroupBox):
    """The reviewed planes of the attached review, kept up to date; hidden while none is attached."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Review", parent)
        self.review: PlaneReview | None = None
        help_label = QLabel(HELP)
        help_label.setWordWrap(True)
        self.mark_button = QPushButton("Plane is right (Shift-R)")
        self.plane_list = QListWidget()
        self.plane_list.setMaximumHeight(LIST_HEIGHT)
        self.plane_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.go_button = QPushButton("Go to")
        self.unmark_button = QPushButton("Unmark")
        self.count = QLabel()
        self.status = QLabel()
        self.status.setWordWrap(True)
        #: where the Predict widget adds its "Fine-tune" button
        self.actions = QHBoxLayout()

        buttons = QHBoxLayout()
        buttons.addWidget(self.go_button)
        buttons.addWidget(self.unmark_button)
        layout = QVBoxLayout(self)
        for widget in (help_label, self.mark_button, self.plane_list):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        layout.addWidget(self.count)
        layout.addWidget(self.status)
        layout.addLayout(self.actions)

        self.mark_button.clicked.connect(self.mark_current)
        self.go_button.clicked.connect(self._go_to_selected)
        self.plane_list.itemDoubleClicked.connect(
            lambda item: self.go_to(item.data(Qt.ItemDataRole.UserRole))
        )
        self.unmark_button.clicked.connect(self.unmark_selected)
        self.hide()

    def attach(self, review: PlaneReview) -> None:
        self.detach()
        self.review = review
        review.changed.connect(self._update)
        self._update()
        self.show()

    def detach(self) -> None:
        if self.review is not None:
            self.review.changed.disconnect(self._update)
        self.review = None
        self.plane_list.clear()
        self.status.clear()
        self.hide()

    def selected_planes(self) -> list[Plane]:
        return [item.data(Qt.ItemDataRole.UserRole) for item in self.plane_list.selectedItems()]

    def _update(self) -> None:
        """Rebuild the list from the review, keeping the user's selection."""
        if self.review is None:
            return
        selected = set(self.selected_planes())
        self.plane_list.clear()
        for plane in self.review.planes:
            item = QListWidgetItem(f"{plane} — {HOW_TEXT[self.review.how(plane)]}")
            item.setData(Qt.ItemDataRole.UserRole, plane)
            self.plane_list.addItem(item)
            item.setSelected(plane in selected)
        count = len(self.review.planes)
        self.count.setText(f"{count} plane{'' if count == 1 else 's'} reviewed")

    def mark_current(self) -> None:
        if self.review is None:
            return
        plane = self.review.mark_current()
        self.status.setText("show a 2D plane first" if plane is None else f"{plane} marked right")

    def unmark_selected(self) -> None:
        if self.review is None:
            return
        for plane in self.selected_planes():
            self.review.unmark(plane)

    def _go_to_selected(self) -> None:
        planes = self.selected_planes()
        if planes:
            self.go_to(planes[0])

    def go_to(self, plane: Plane) -> None:
        """Show a plane: 2D display with its axis sliced (the user's orientation kept when it already is)
        and the viewer's point on it, converted from data to world with the layer's scale and translate."""
        if self.review is None:
            return
        dims, layer = self.review.viewer.dims, self.review.layer
        offset = dims.ndim - layer.ndim
        axis = plane.axis + offset
        if dims.ndisplay != 2 or self.review.layer_axes(dims.not_displayed) != [plane.axis]:
            others = [a for a in dims.order if a < offset]  # dims the layer lacks stay in front
            dims.ndisplay = 2
            dims.order = (*others, axis, *(a for a in range(offset, dims.ndim) if a != axis))
        position = layer.world_to_data(dims.point)
        position[plane.axis] = plane.index
        dims.set_point(axis, float(layer.data_to_world(position)[plane.axis]))
        self.status.setText(f"showing {plane}")
