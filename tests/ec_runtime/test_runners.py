import numpy as np
import onnxruntime as ort
import pytest

from ec_runtime.errors import EcRuntimeError, ModelNotFoundError
from ec_runtime.runners import OrtRunner


def test_ort_runner_lifecycle_and_io_names(lite_export):
    runner = OrtRunner(lite_export / "canny.onnx", threads=1)
    with pytest.raises(EcRuntimeError, match="not active"):
        runner.infer({})
    with runner:
        assert runner.input_names == ["gray", "mask"] and runner.output_names == ["edges"]
        assert runner.session.get_session_options().intra_op_num_threads == 1
        gray = np.random.default_rng(0).random((2, 1, 32, 48), np.float32)
        edges = runner.infer({"gray": gray, "mask": np.zeros_like(gray)})["edges"]
        assert edges.shape == (2, 1, 32, 48) and set(np.unique(edges)) <= {0.0, 1.0}
        with pytest.raises(EcRuntimeError, match=r"missing inputs \['mask'\]"):
            runner.infer({"gray": gray})
    assert not runner.is_active and runner.session is None


def test_unavailable_provider_falls_back_to_cpu_with_a_warning(lite_export):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    with pytest.warns(RuntimeWarning, match=r"ec-deploy\[gpu\]"):
        runner = OrtRunner(lite_export / "edge.onnx", providers="cuda").activate()
    assert runner.session.get_providers() == ["CPUExecutionProvider"] and not runner.on_cuda


def test_missing_or_broken_model_files_name_the_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "edge.onnx")):
        OrtRunner(tmp_path / "edge.onnx").activate()
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(EcRuntimeError, match=str(tmp_path / "bad.onnx")):
        OrtRunner(tmp_path / "bad.onnx").activate()
