"""No memory growth over many calls, measured in a torch-free process (the deployed runtime alone)."""

import json

import pytest

from tests.ec_runtime.test_no_torch import run_without_torch

CALLS = 200
MEASURE = """
import json, numpy as np, psutil
from ec_runtime.pipeline import Inpainter
rng = np.random.default_rng(0)
img = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
mask = np.zeros((512, 512), bool)
mask[100:300, 150:260] = True
mask[380:450, 40:400] = True
proc = psutil.Process()
rss = []
with Inpainter.from_dir({export!r}, threads=2) as painter:
    for i in range({calls}):
        out = painter.inpaint(img, mask)
        rss.append(proc.memory_info().rss)
print(json.dumps(rss))
"""


@pytest.mark.slow
def test_rss_stays_flat_over_200_calls_at_512(tiny_export):
    proc = run_without_torch(MEASURE.format(export=str(tiny_export), calls=CALLS))
    assert proc.returncode == 0, proc.stderr
    rss = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(rss) == CALLS
    growth = rss[-1] / rss[9] - 1
    assert growth < 0.05, f"RSS grew {growth:.1%} from call 10 ({rss[9] >> 20} MiB) to call {CALLS} ({rss[-1] >> 20} MiB)"
