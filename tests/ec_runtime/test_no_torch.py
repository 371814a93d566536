"""ec_runtime must import (and, once the pipeline exists, inpaint) with torch unavailable."""

import subprocess
import sys

BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'ec_train', 'ec_export'):
            raise ImportError(name + ' is blocked: ec_runtime must not import it')
sys.meta_path.insert(0, _Block())
"""


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, timeout=300)


def test_ec_runtime_imports_without_torch():
    proc = run_without_torch("import ec_runtime, ec_runtime.tensorrt_support\nprint('ok')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_cpu_inpaint_without_torch(lite_export):
    """The whole runtime path (read, Inpainter on ONNX Runtime, write) with torch blocked."""
    code = f"""
import numpy as np
from ec_runtime import Inpainter
from ec_runtime.imageio import read_image, write_image
import sys
rng = np.random.default_rng(0)
img = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
mask = np.zeros((40, 52), bool)
mask[10:25, 12:30] = True
with Inpainter.from_dir({str(lite_export)!r}) as painter:
    out = painter.inpaint(img, mask)
assert out.shape == img.shape and out.dtype == np.uint8
assert np.array_equal(out[~mask], img[~mask]) and not np.array_equal(out[mask], img[mask])
assert not any(m.split('.')[0] in ('torch', 'ec_train', 'ec_export') for m in sys.modules)
print('inpainted', painter.backend)
"""
    proc = run_without_torch(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("inpainted onnxruntime")


def test_cli_help_without_torch():
    proc = run_without_torch("from ec_runtime.cli import main\nmain(['--help'])")
    assert "ec-inpaint" in proc.stdout or "INPUT" in proc.stdout, proc.stderr
