"""Where a task finds its data when given no path: the folder named by $SODAKIT_DATA, laid out as

    $SODAKIT_DATA/blimp/blimp_data_jsonl.tar.xz            BLiMP (tblimp)
    $SODAKIT_DATA/hellaswag/hellaswag_val_full.txt.bz2     HellaSwag validation (hellaswag)

Nothing else is guessed: the package never looks outside itself and the paths its user names, so
without the variable a task that needs data says what to pass (`--data TASK=PATH` or SODAKIT_DATA).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "SODAKIT_DATA"
BLIMP_FILE = "blimp/blimp_data_jsonl.tar.xz"
HELLASWAG_FILE = "hellaswag/hellaswag_val_full.txt.bz2"


def default_data(relative: str) -> Path | None:
    """$SODAKIT_DATA/`relative`, or None when the variable is not set."""
    root = os.environ.get(DATA_ENV)
    return Path(root).expanduser() / relative if root else None


def data_hint(relative: str) -> str:
    """How a user makes the default location exist, for help texts and errors."""
    return f"default ${DATA_ENV}/{relative} when {DATA_ENV} is set"
