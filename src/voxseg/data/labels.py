"""What label values mean: background, foreground, or not annotated (sparse labels).

Dense labels need no map: 0 is background and any value above 0 foreground (an instance label
image is a valid mask). Sparse annotations mark only some voxels and leave the rest unlabelled,
e.g. TRAILMAP's 0 = not annotated, 1 = background, 2 = object, written
`--label-map 0:ignore,1:background,2:foreground`. Voxels mapped to `ignore` are left out of the
loss and of every validation metric; `*` gives the class of every value not listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxseg.errors import ConfigError, DataError

#: the classes a label value is mapped to, as stored in training volumes (uint8)
BACKGROUND, FOREGROUND, IGNORED = 0, 1, 2
CLASS_NAMES = {"background": BACKGROUND, "foreground": FOREGROUND, "ignore": IGNORED}
_ALIASES = {"bg": "background", "fg": "foreground", "ignored": "ignore", "unlabelled": "ignore"}
_NAMES = {value: name for name, value in CLASS_NAMES.items()}
#: a label holding this many values a map leaves out is named as instance ids (a few extra classes
#: leave out one or two values; ids, one per object, leave out many)
INSTANCE_LIKE_VALUES = 3


@dataclass(frozen=True)
class LabelMap:
    """Label value -> class; `others` is the class of values not listed (None: they are an error)."""

    values: tuple[tuple[int, int], ...] = ((0, BACKGROUND),)
    others: int | None = FOREGROUND

    @classmethod
    def parse(
        cls, text: str | None, ignore_label: int | None = None, option: str = "--label-map"
    ) -> LabelMap:
        """`0:ignore,1:background,2:foreground` (and `*:class` for the rest); None keeps the default
        (0 background, > 0 foreground). `ignore_label` adds `V:ignore` to either."""
        label_map = cls() if not text else cls._parse(text, option)
        if ignore_label is None:
            return label_map
        if ignore_label < 0:
            raise ConfigError(f"--ignore-label: label values are >= 0, got {ignore_label}")
        listed = dict(label_map.values)
        if listed.get(ignore_label, IGNORED) != IGNORED:
            name = _NAMES[listed[ignore_label]]
            raise ConfigError(f"--ignore-label {ignore_label}: {option} already maps it to {name}")
        listed[ignore_label] = IGNORED
        return cls(tuple(sorted(listed.items())), label_map.others)

    @classmethod
    def _parse(cls, text: str, option: str) -> LabelMap:
        listed: dict[int, int] = {}
        others = None
        for entry in str(text).split(","):
            value, sep, name = entry.partition(":")
            name = _ALIASES.get(name.strip().lower(), name.strip().lower())
            if not sep or name not in CLASS_NAMES:
                raise ConfigError(
                    f"{option}: {entry.strip()!r} is not VALUE:CLASS (CLASS one of background, "
                    "foreground, ignore), e.g. 0:ignore,1:background,2:foreground"
                )
            if value.strip() == "*":
                others = CLASS_NAMES[name]
                continue
            try:
                number = int(value)
            except ValueError:
                raise ConfigError(
                    f"{option}: label value {value.strip()!r} is not a whole number or *"
                ) from None
            if number < 0 or number in listed:
                raise ConfigError(f"{option}: label value {number} is negative or given twice")
            listed[number] = CLASS_NAMES[name]
        if FOREGROUND not in {*listed.values(), others}:
            raise ConfigError(f"{option}: no value is mapped to foreground")
        return cls(tuple(sorted(listed.items())), others)

    @property
    def has_ignored(self) -> bool:
        return IGNORED in {cls for _, cls in self.values} or self.others == IGNORED

    @property
    def is_default(self) -> bool:
        return self == LabelMap()

    def class_of(self, value: int) -> int | None:
        """The class this map gives `value` (None: the map does not cover it)."""
        return dict(self.values).get(value, self.others)

    def __str__(self) -> str:
        parts = [f"{value}:{_NAMES[cls]}" for value, cls in self.values]
        if self.others is not None:
            parts.append(f"*:{_NAMES[self.others]}")
        return ",".join(parts)

    def classes(self, raw: np.ndarray, path: object) -> np.ndarray:
        """The class of every voxel (uint8); a value the map does not cover raises DataError."""
        out = np.full(raw.shape, BACKGROUND if self.others is None else self.others, np.uint8)
        if self.is_default:  # the common case in one pass
            np.greater(raw, 0, out=out, casting="unsafe")
            return out
        covered = np.zeros(raw.shape, bool) if self.others is None else None
        for value, cls in self.values:
            hit = raw == value
            out[hit] = cls
            if covered is not None:
                covered |= hit
        if covered is not None and not covered.all():
            found = np.unique(raw[~covered])
            shown = ", ".join(str(v.item()) for v in found[:5]) + (" …" if len(found) > 5 else "")
            hint = self._uncovered_hint(len(found))
            raise DataError(f"{path}: label values {shown} are not in --label-map {self}{hint}")
        return out

    def _uncovered_hint(self, count: int) -> str:
        """What a label with values the map leaves out may be: a class map given instance ids (one
        value per object) is the usual case once several values are left out."""
        if count < INSTANCE_LIKE_VALUES:
            return " (add VALUE:CLASS for them, or *:CLASS for every value not listed)"
        return (
            f" ({count} values left out: instance ids, one per object? Without --label-map every value "
            "above 0 is foreground; or add *:foreground)"
        )


def scored(probability: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, foreground truth) of the annotated voxels: all of them for dense labels, and
    never a not-annotated one, so a sparse label's gaps neither reward nor punish a prediction."""
    ignored = classes == IGNORED
    if ignored.any():
        keep = ~ignored
        return probability[keep], classes[keep] == FOREGROUND
    return probability, classes == FOREGROUND
