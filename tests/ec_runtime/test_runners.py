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


def test_provider_options_are_merged_and_cuda_keeps_full_fp32(monkeypatch):
    import onnxruntime as ort

    from ec_runtime.runners import resolve_providers

    monkeypatch.setattr(ort, "get_available_providers", lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "__version__", "1.20.1")
    got = resolve_providers([("cuda", {"gpu_mem_limit": 1 << 30}), ("TensorrtExecutionProvider",
                             {"trt_fp16_enable": True, "device_id": 1}), ("CPUExecutionProvider", {"arena": 0})], 2)
    assert got == [("CUDAExecutionProvider", {"device_id": 2, "use_tf32": 0, "gpu_mem_limit": 1 << 30}),
                   ("TensorrtExecutionProvider", {"device_id": 1, "trt_fp16_enable": True}),
                   ("CPUExecutionProvider", {"arena": 0})]
    assert resolve_providers([("cuda", {"use_tf32": 1})])[0][1]["use_tf32"] == 1  # the caller's choice wins
    monkeypatch.setattr(ort, "__version__", "1.17.3")  # no use_tf32 option before 1.18
    assert resolve_providers("cuda") == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
