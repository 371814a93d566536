"""Package trained demo weights: a slim checkpoint for ec_train and an FP32 export for ec_runtime.

    python scripts/ship_demo_model.py EDGE_CKPT INPAINT_CKPT

EDGE_CKPT / INPAINT_CKPT are ec-train checkpoints (the edge and inpaint runs). Writes
``ec_train/pretrained/edgeconnect_lite_demo.pth`` (both generators only, fp16 storage, loads into
fp32 models) and ``ec_runtime/models/demo/`` (canny/edge/inpaint FP32 ONNX + export.json), so the
torch-free runtime has a model out of the box; FP16/INT8 variants are one ``ec-export`` away.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ec_export.exporter import export_checkpoints  # noqa: E402
from ec_train import __version__  # noqa: E402
from ec_train.checkpoints import TRAIN_FORMAT, atomic_save, read_checkpoint  # noqa: E402
from ec_train.pretrained import DEMO_CHECKPOINT  # noqa: E402

RUNTIME_DEMO = ROOT / "ec_runtime" / "models" / "demo"


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    edge_ckpt, inpaint_ckpt = (read_checkpoint(p) for p in sys.argv[1:])
    models = {"edge_generator": edge_ckpt["models"]["edge_generator"],
              "inpaint_generator": inpaint_ckpt["models"]["inpaint_generator"]}
    half = {name: {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()} for name, sd in models.items()}
    slim = {"format": TRAIN_FORMAT, "toolkit_version": __version__,
            "iteration": {"edge": edge_ckpt["iteration"], "inpaint": inpaint_ckpt["iteration"]},
            "config": {"edge": edge_ckpt.get("config", {}), "inpaint": inpaint_ckpt.get("config", {})},
            "models": half, "note": "demo model: generators only, fp16 storage (see docs/demo-model.md)"}
    atomic_save(slim, DEMO_CHECKPOINT)
    print(f"checkpoint: {DEMO_CHECKPOINT} ({DEMO_CHECKPOINT.stat().st_size / 2**20:.1f} MiB)")
    if RUNTIME_DEMO.exists():
        shutil.rmtree(RUNTIME_DEMO)
    export_checkpoints([DEMO_CHECKPOINT], RUNTIME_DEMO, precisions=("fp32",), progress=True)
    manifest = RUNTIME_DEMO / "export.json"
    info = json.loads(manifest.read_text())
    for entry in info["source"]["checkpoints"]:  # machine-independent: relative to the repository
        entry["path"] = str(DEMO_CHECKPOINT.relative_to(ROOT))
    manifest.write_text(json.dumps(info, indent=2) + "\n")
    size = sum(p.stat().st_size for p in RUNTIME_DEMO.iterdir())
    print(f"runtime export: {RUNTIME_DEMO} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
