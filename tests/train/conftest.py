"""``train/`` holds scripts and their modules, not a package: make them importable."""

from __future__ import annotations

import sys
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "train"
if str(TRAIN) not in sys.path:
    sys.path.insert(0, str(TRAIN))
