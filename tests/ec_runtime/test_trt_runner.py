"""TensorRT runner: engine checks here (fake trt module), real execution on a GPU (marked gpu)."""

from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest

import ec_runtime.trt_runner as trt_runner
from ec_runtime.errors import EngineMismatchError, ModelNotFoundError
from ec_runtime.pipeline import Inpainter
from ec_runtime.tensorrt_support import EngineSidecar, GpuInfo, sha256_file
from tests.helpers import photo_and_mask, psnr


def _fake_engine(path, version="10.3.0", cc="8.7", module="tensorrt"):
    path.write_bytes(b"serialized plan")
    EngineSidecar(tensorrt_module=module, tensorrt_version=version, precision="fp32",
                  profile={"min": [1, 16, 16], "opt": [1, 512, 512], "max": [4, 1024, 1024]},
                  onnx_file=path.with_suffix(".onnx").name, onnx_sha256="00" * 32,
                  engine_sha256=sha256_file(path), gpu_name="Orin", compute_capability=cc).write(path)
    return path


@pytest.fixture
def fake_trt(monkeypatch):
    """TensorRT 10.8.0 on an sm_87 GPU, as far as the engine check can tell (no pycuda involved)."""
    trt = types.SimpleNamespace(__name__="tensorrt", __version__="10.8.0")
    monkeypatch.setattr(trt_runner, "import_tensorrt", lambda prefer=None: trt)
    monkeypatch.setattr(trt_runner, "current_gpu", lambda device=0: GpuInfo("Orin", "8.7"))
    return trt


def test_engine_from_another_tensorrt_version_is_refused(tmp_path, fake_trt):
    engine = _fake_engine(tmp_path / "edge.engine", version="10.3.0")
    with pytest.raises(EngineMismatchError, match=r"built with tensorrt 10\.3\.0, but 10\.8\.0 is installed"):
        trt_runner.TrtRunner(engine).activate()
    assert "pycuda" not in sys.modules  # refused before any GPU work


def test_engine_for_another_gpu_is_refused(tmp_path, fake_trt):
    engine = _fake_engine(tmp_path / "edge.engine", version="10.8.0", cc="9.0")
    with pytest.raises(EngineMismatchError, match="compute capability 9.0"):
        trt_runner.check_engine(engine)
    trt_runner.check_engine(_fake_engine(tmp_path / "ok.engine", version="10.8.0"))  # a matching one passes


def test_missing_engine_or_sidecar_names_the_path(tmp_path, fake_trt):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "gone.engine")):
        trt_runner.TrtRunner(tmp_path / "gone.engine").activate()
    (tmp_path / "bare.engine").write_bytes(b"plan")
    with pytest.raises(ModelNotFoundError, match="bare.engine.json"):
        trt_runner.check_engine(tmp_path / "bare.engine")


def test_inpainter_refuses_mismatched_engines_in_an_export(tmp_path, lite_export, fake_trt):
    export = tmp_path / "export"
    shutil.copytree(lite_export, export)
    manifest = json.loads((export / "export.json").read_text())
    manifest["engines"] = {}
    for kind in ("canny", "edge", "inpaint"):
        _fake_engine(export / f"{kind}.engine", version="10.3.0")
        manifest["engines"][f"{kind}.fp32"] = {"engine": f"{kind}.engine", "sidecar": f"{kind}.engine.json"}
    (export / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineMismatchError, match="canny.engine"):
        Inpainter.from_dir(export, backend="tensorrt")


# --- real TensorRT on a GPU (skipped where there is none) ---------------------------------------------

@pytest.fixture(scope="module")
def gpu_engines(lite_export, tmp_path_factory):
    """The lite export with FP32 engines built by this machine's TensorRT and recorded in export.json."""
    from ec_export.engine import build_engine, record_engine

    out = tmp_path_factory.mktemp("engines")
    shutil.copytree(lite_export, out, dirs_exist_ok=True)
    for kind in ("canny", "edge", "inpaint"):
        record_engine(out / f"{kind}.onnx", build_engine(out / f"{kind}.onnx"))  # the default profile
    return out


@pytest.mark.gpu
@pytest.mark.trt
def test_trt_runner_matches_onnxruntime_and_replays_cuda_graphs(gpu_engines):
    import warnings

    from ec_runtime.runners import OrtRunner

    rng = np.random.default_rng(0)
    feed = {"image": rng.random((2, 3, 96, 128), np.float32), "edges": (rng.random((2, 1, 96, 128)) > 0.9)
            .astype(np.float32), "mask": (rng.random((2, 1, 96, 128)) > 0.7).astype(np.float32)}
    small = {k: v[:1, :, :64, :64] for k, v in feed.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed capture warns and turns graphs off: that must not happen
        with OrtRunner(gpu_engines / "inpaint.onnx") as ort_runner, \
                trt_runner.TrtRunner(gpu_engines / "inpaint.engine", cuda_graph=True) as runner:
            expected, expected_small = ort_runner.infer(feed)["image_out"], ort_runner.infer(small)["image_out"]
            for f, want in ((feed, expected), (feed, expected), (feed, expected), (small, expected_small),
                            (small, expected_small), (feed, expected)):  # A, B, A
                assert psnr(runner.infer(f)["image_out"], want) >= 50
            assert runner.cuda_graph and runner.graphs == 2
            assert (runner.captures, runner.replays) == (2, 4)  # one capture per shape, every later call replays


@pytest.mark.gpu
@pytest.mark.trt
def test_canny_engine_matches_onnxruntime_fp32_pixel_for_pixel(gpu_engines):
    from ec_runtime.runners import OrtRunner

    img, mask = photo_and_mask("astronaut", 256, 0)
    gray = (img.astype(np.float32) / 255 @ np.array([0.2125, 0.7154, 0.0721], np.float32))[None, None]
    feed = {"gray": np.ascontiguousarray(gray), "mask": mask[None, None].astype(np.float32)}
    with OrtRunner(gpu_engines / "canny.onnx") as ort_runner, \
            trt_runner.TrtRunner(gpu_engines / "canny.engine") as runner:
        got, want = runner.infer(feed)["edges"], ort_runner.infer(feed)["edges"]
    assert json.loads((gpu_engines / "canny.engine.json").read_text())["tf32"] is False
    assert int(np.sum(got != want)) == 0, f"{int(np.sum(got != want))} of {got.size} edge pixels differ"


@pytest.mark.gpu
@pytest.mark.trt
def test_tensorrt_inpainter_matches_onnxruntime(gpu_engines):
    img, mask = photo_and_mask("astronaut", 128, 0)
    with Inpainter.from_dir(gpu_engines, backend="tensorrt") as trt_painter, \
            Inpainter.from_dir(gpu_engines, backend="onnxruntime", providers="cpu") as ort_painter:
        assert trt_painter.backend == "tensorrt"
        got, edges = trt_painter.inpaint(img, mask, return_edges=True)
        want, want_edges = ort_painter.inpaint(img, mask, return_edges=True)
    assert psnr(got, want, 255) >= 40
    assert np.mean(np.abs(edges - want_edges) > 0.5) < 0.01


@pytest.mark.gpu
def test_onnxruntime_cuda_chain_matches_cpu(lite_export):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider (pip install ec-deploy[gpu])")
    img, mask = photo_and_mask("coffee", 128, 1)
    with Inpainter.from_dir(lite_export, providers="cuda") as gpu, \
            Inpainter.from_dir(lite_export, providers="cpu") as cpu:
        assert gpu.providers[0] == "CUDAExecutionProvider"
        got, edges = gpu.inpaint(img, mask, return_edges=True)
        want, want_edges = cpu.inpaint(img, mask, return_edges=True)
    assert psnr(got, want, 255) >= 40
    assert np.mean(np.abs(edges - want_edges) > 0.5) < 0.01
