"""A colour bar for the widget: the overlay's colour map with its window in SUV or normalised units.

napari's own colour bar belongs to a layer and hides with it; this one stays
in the widget while the user flips between the fused overlay and the
registered scan, and names its units.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QRect, Qt
from qtpy.QtGui import QImage, QPainter, QPixmap
from qtpy.QtWidgets import QSizePolicy, QWidget

from mixfuse_med.colormaps import colormap_table


def colourbar_ticks(window: tuple[float, float], units: str, method: str) -> tuple[list[str], str]:
    """Tick labels (low, middle, high) and a caption: SUV values for an SUV window, else 0..1."""
    low, high = (float(v) for v in window)
    if method.upper().startswith("SUV"):
        return [f"{v:.3g}" for v in (low, (low + high) / 2, high)], f"{units or 'SUV'} ({method})"
    caption = f"normalised: 0 = {low:.4g}, 1 = {high:.4g} {units} ({method or 'window'})".strip()
    return ["0", "0.5", "1"], caption


class ColourBar(QWidget):
    """A horizontal colour bar with three ticks and a caption; empty until :meth:`set_map`."""

    BAR_HEIGHT = 14

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self.ticks: list[str] = []
        self.caption = ""
        self.setMinimumHeight(self.BAR_HEIGHT + 2 * self.fontMetrics().height() + 8)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def set_map(self, colormap: str, window: tuple[float, float], units: str, method: str) -> None:
        rgb = np.ascontiguousarray((colormap_table(colormap) * 255).round().astype(np.uint8)[None])
        image = QImage(rgb.data, rgb.shape[1], 1, rgb.strides[0], QImage.Format_RGB888)
        self._pixmap = QPixmap.fromImage(image.copy())
        self.ticks, self.caption = colourbar_ticks(window, units, method)
        self.setToolTip(self.caption)
        self.update()

    def clear(self) -> None:
        self._pixmap, self.ticks, self.caption = None, [], ""
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self._pixmap is None:
            return
        painter = QPainter(self)
        margin = 4
        width = self.width() - 2 * margin
        painter.drawPixmap(QRect(margin, 0, width, self.BAR_HEIGHT), self._pixmap)
        painter.setPen(self.palette().windowText().color())
        line = self.fontMetrics().height()
        for k, (text, align) in enumerate(zip(self.ticks, (Qt.AlignLeft, Qt.AlignHCenter, Qt.AlignRight),
                                              strict=False)):
            x = margin + k * width // 2
            painter.drawLine(x, self.BAR_HEIGHT, x, self.BAR_HEIGHT + 3)
            box = QRect(margin, self.BAR_HEIGHT + 3, width, line)
            painter.drawText(box, int(align), text)
        painter.drawText(QRect(margin, self.BAR_HEIGHT + 3 + line, width, line), int(Qt.AlignLeft),
                         self.fontMetrics().elidedText(self.caption, Qt.ElideRight, width))
        painter.end()
