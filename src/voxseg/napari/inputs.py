"""Qt pieces the dock widgets share: one input per form `Field`, its error line, and the log relay.

Each input is the Qt widget its field's kind calls for; `input_value` / `set_input_value` read and
write any of them, so a widget's form is a dict of field name -> input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from voxseg.napari.form import Field
from voxseg.training.session import LOG_FORMAT

ERROR_STYLE = "color: #ff6b6b;"
WEIGHTS_FILTER = "Weights (*.pth *.pt *.safetensors);;All files (*)"


class LogRelay(QObject, logging.Handler):
    """Forwards `voxseg` log records from a worker thread to the GUI thread (queued signal)."""

    message = Signal(str)

    def __init__(self) -> None:
        QObject.__init__(self)
        logging.Handler.__init__(self, logging.INFO)
        self.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:  # type: ignore[override]
        self.message.emit(self.format(record))


def make_input(field: Field, on_change: Callable[..., Any], parent: QWidget | None = None) -> QWidget:
    """The input for `field`, calling `on_change` whenever its value changes.

    bool: a check box; choice: a combo box (blank first when the option may be left out, editable
    for the device, for `cuda:1` and the like); int: a spin box; everything else a line edit, with
    Browse… for paths (the line edit is the row's `line` attribute).
    """
    if field.kind == "bool":
        box = QCheckBox()
        box.toggled.connect(on_change)
        return box
    if field.kind == "choice":
        combo = QComboBox()
        combo.addItems(([""] if field.optional else []) + list(field.choices))
        combo.setEditable(field.name == "device")
        combo.currentTextChanged.connect(on_change)
        return combo
    if field.kind == "int":
        spin = QSpinBox()
        spin.setRange(0, 2**31 - 1)  # 0 is allowed in the box so that its error can be shown
        spin.valueChanged.connect(on_change)
        return spin
    line = QLineEdit()
    line.setPlaceholderText(field.placeholder)
    line.textChanged.connect(on_change)
    if field.kind not in ("folder", "file", "path"):
        return line
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(line)
    browse = QPushButton("Browse…")
    if field.kind == "path":  # a folder or a file: ask which
        menu = QMenu(browse)
        menu.addAction("Folder…", lambda: browse_into(parent, line, field.label, "folder"))
        menu.addAction("File…", lambda: browse_into(parent, line, field.label, "file"))
        browse.setMenu(menu)
    else:
        browse.clicked.connect(lambda: browse_into(parent, line, field.label, field.kind))
    layout.addWidget(browse)
    row.line = line  # type: ignore[attr-defined]
    row.browse = browse  # type: ignore[attr-defined]
    return row


def browse_into(parent: QWidget | None, line: QLineEdit, title: str, kind: str) -> None:
    """A folder or file dialog that starts at the line's path and puts the choice in it."""
    if kind == "folder":
        path = QFileDialog.getExistingDirectory(parent, title, line.text())
    else:
        path, _ = QFileDialog.getOpenFileName(parent, title, line.text(), WEIGHTS_FILTER)
    if path:
        line.setText(path)


def input_value(widget: QWidget) -> Any:
    """An input's value: bool, the combo's text, the spin box's int, or the line's text."""
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QSpinBox):
        return widget.value()
    return getattr(widget, "line", widget).text()


def set_input_value(widget: QWidget, value: Any) -> None:
    if isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QComboBox):
        if widget.findText(str(value)) < 0 and widget.isEditable():
            widget.addItem(str(value))
        widget.setCurrentText(str(value))
    elif isinstance(widget, QSpinBox):
        widget.setValue(int(value))
    else:
        getattr(widget, "line", widget).setText("" if value is None else str(value))


def with_error(widget: QWidget) -> tuple[QWidget, QLabel]:
    """The input with its error line under it (hidden while the value is fine): (holder, error label)."""
    holder = QWidget()
    layout = QVBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(1)
    layout.addWidget(widget)
    error = QLabel()
    error.setStyleSheet(ERROR_STYLE)
    error.setWordWrap(True)
    error.hide()
    layout.addWidget(error)
    return holder, error


def show_errors(labels: dict[str, QLabel], errors: dict[str, str]) -> None:
    """Each error under its field; the other error lines hidden."""
    for name, label in labels.items():
        label.setText(errors.get(name, ""))
        label.setVisible(name in errors)


def add_run_controls(
    column: QVBoxLayout, on_click: Callable[[], Any], log_height: int
) -> tuple[QPushButton, QProgressBar, QLabel, QPlainTextEdit]:
    """Start/Stop button, progress bar, status line and log panel, added to `column`."""
    button = QPushButton("Start")
    button.clicked.connect(on_click)
    column.addWidget(button)
    progress = QProgressBar()
    progress.setFormat("%p%")
    column.addWidget(progress)
    status = QLabel("Ready")
    status.setWordWrap(True)
    status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    column.addWidget(status)
    log_view = QPlainTextEdit()
    log_view.setReadOnly(True)
    log_view.setMinimumHeight(log_height)
    column.addWidget(log_view)
    return button, progress, status, log_view
