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
