"""Weights that ship with the toolkit: the demo model trained with ``ec-train`` on open photos.

See ``docs/demo-model.md`` for the data, commands and wall time that produced them.
"""

from __future__ import annotations

from pathlib import Path

from ec_train.errors import CheckpointError

DEMO_CHECKPOINT = Path(__file__).resolve().parent / "edgeconnect_lite_demo.pth"


def demo_checkpoint() -> Path:
    """Path of the shipped demo training checkpoint (lite variant, both generators)."""
    if not DEMO_CHECKPOINT.exists():
        raise CheckpointError(f"the demo checkpoint is missing: {DEMO_CHECKPOINT} (reinstall ec-deploy, or pass "
                              "your own checkpoint or export directory)")
    return DEMO_CHECKPOINT
