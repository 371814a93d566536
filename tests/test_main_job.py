"""The README's main job, in its shortened CI form (QUICK=1): export, inpaint, montage, bench, serve."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_main_job_runs_end_to_end(tmp_path):
    if Path(sys.executable).parent != ROOT / ".venv" / "bin":
        pytest.skip("the main job uses the repository's .venv (created by scripts/test.sh)")
    out = tmp_path / "results"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "main_job.sh"), str(out)], cwd=ROOT,
                          env={**os.environ, "QUICK": "1"}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    montage = cv2.imread(str(out / "montage.png"))
    assert montage is not None and montage.shape[1] == 4 * 256 and montage.shape[0] >= 2 * 256
    assert len(list((out / "inpainted").glob("*.png"))) >= 2
    bench = json.loads((out / "bench.json").read_text())
    assert {r["backend"] for r in bench["rows"]} == {"torch", "onnxruntime"}
    assert f"Results in {out}/" in proc.stdout
    served = list((out / "served").glob("*.png"))  # one photo through ec-serve, identical to in-process
    assert len(served) == 1 and "identical to the in-process result" in proc.stdout
    assert (out / "triton-repo" / "edgeconnect" / "config.pbtxt").is_file()
