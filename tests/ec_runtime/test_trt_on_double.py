"""The TensorRT path of ec_runtime, run end to end on the GPU test double (no GPU needed).

Engines here are plans of the double's builder, built by the real ``ec-export engine`` code;
TrtRunner, TrtChain and the Inpainter drive the double's TensorRT, pycuda and CUDA-graph APIs,
which enforce the contracts listed in :mod:`tests.ec_runtime.gpu_double`.
"""

from __future__ import annotations

import json
import shutil
import warnings

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from ec_runtime.pipeline import Inpainter
from tests.ec_runtime.trt_double import install
from tests.helpers import photo_and_mask

KINDS = ("canny", "edge", "inpaint")


def _build(export, monkeypatch_ctx, *args):
    from ec_export.cli import main

    install(monkeypatch_ctx)
    files = [str(export / f"{k}.onnx") for k in KINDS]
    result = CliRunner().invoke(main, ["engine", *files, *args])
    assert result.exit_code == 0, result.output
    return export


@pytest.fixture(scope="module")
def engines(lite_export, tmp_path_factory):
    """The lite export plus engines built with `ec-export engine` (default profile) on the double."""
    out = tmp_path_factory.mktemp("double_engines")
    shutil.copytree(lite_export, out, dirs_exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        return _build(out, mp)


@pytest.fixture
def gpu(monkeypatch):
    gpu, _ = install(monkeypatch)
    return gpu


@pytest.fixture(scope="module")
def ort_painter(lite_export):
    with Inpainter.from_dir(lite_export, backend="onnxruntime", providers="cpu") as painter:
        yield painter


def _feed(rng, n=1, h=64, w=64):
    return {"gray": rng.random((n, 1, h, w), np.float32), "mask": (rng.random((n, 1, h, w)) > 0.7).astype(np.float32)}


def _ort(engines, kind, feed):
    from ec_runtime.runners import OrtRunner

    with OrtRunner(engines / f"{kind}.onnx") as runner:
        return runner.infer(feed)


def test_ec_export_engine_records_engines_and_auto_picks_tensorrt(engines, gpu):
    manifest = json.loads((engines / "export.json").read_text())
    assert sorted(manifest["engines"]) == ["canny.fp32", "edge.fp32", "inpaint.fp32"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        painter = Inpainter.from_dir(engines, backend="auto")
    assert painter.backend == "tensorrt"
    painter.close()


def test_trt_runner_matches_onnxruntime_and_survives_reactivation(engines, gpu, rng):
    from ec_runtime.trt_runner import TrtRunner

    feed = _feed(rng, 2, 48, 80)
    want = _ort(engines, "canny", feed)["edges"]
    runner = TrtRunner(engines / "canny.engine")
    for _ in range(2):  # activate, deactivate, activate again: freed addresses come back
        with runner:
            assert runner.input_names == ["gray", "mask"] and runner.output_names == ["edges"]
            np.testing.assert_array_equal(runner.infer(feed)["edges"], want)
    assert gpu.counts["reused"] > 0


def test_cuda_graphs_are_captured_and_replayed_per_shape(engines, gpu, rng):
    from ec_runtime.trt_runner import TrtRunner

    a, b = _feed(rng, 1, 32, 32), _feed(rng, 2, 64, 48)
    want = {id(a): _ort(engines, "canny", a)["edges"], id(b): _ort(engines, "canny", b)["edges"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a capture failure would warn
        with TrtRunner(engines / "canny.engine", cuda_graph=True) as runner:
            for feed in (b, b, a, a, b, a, b):  # A/B/A with the larger shape first: buffers never move
                np.testing.assert_array_equal(runner.infer(feed)["edges"], want[id(feed)])
            assert runner.graphs == 2
            # the per-shape contexts share one block of activation memory (they never run concurrently)
            assert gpu.counts.get("context_memory", 0) == 0
            scratch = {ctx.context.scratch for ctx in runner._contexts.values()}
            assert len(scratch) == 1 and None not in scratch
            # one eager launch and one capture per shape; every later call is a replay
            assert (gpu.counts["capture"], gpu.counts["replay"], gpu.counts["execute"]) == (2, 5, 7)
            c = _feed(rng, 4, 64, 64)  # larger: the input buffers move, so every graph is recaptured
            np.testing.assert_array_equal(runner.infer(c)["edges"], _ort(engines, "canny", c)["edges"])
            np.testing.assert_array_equal(runner.infer(a)["edges"], want[id(a)])
            assert (gpu.counts["capture"], gpu.counts["replay"]) == (4, 5)


def test_version_compatible_engines_load(engines, tmp_path, monkeypatch, rng):
    from ec_export.engine import build_engine
    from ec_runtime.trt_runner import TrtRunner

    _, trt = install(monkeypatch)
    path = build_engine(engines / "canny.onnx", tmp_path / "canny.engine", version_compatible=True)
    monkeypatch.setattr(trt, "__version__", "10.8.0")  # a later TensorRT runs it
    feed = _feed(rng)
    with TrtRunner(path) as runner:
        np.testing.assert_array_equal(runner.infer(feed)["edges"], _ort(engines, "canny", feed)["edges"])


def _compare(trt_out, ort_out):
    diff = np.abs(np.asarray(trt_out, np.int16) - np.asarray(ort_out, np.int16))
    assert diff.max() <= 1, diff.max()
    return int(diff.max())


@pytest.mark.parametrize("size", [(256, 256), (203, 157)])
def test_inpainter_on_tensorrt_matches_onnxruntime(engines, gpu, ort_painter, size):
    img, mask = photo_and_mask("astronaut", 256, 1)
    img, mask = cv2.resize(img, size[::-1]), cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST)
    with Inpainter.from_dir(engines, backend="tensorrt", cuda_graph=True) as painter:
        got, edges = painter.inpaint(img, mask, return_edges=True)
        # gray + mask uploaded once for all three stages, the image once; edges never leave the GPU
        assert (gpu.counts["htod"], gpu.counts["dtoh"]) == (3, 4)
        assert painter.inpaint(img, mask).shape == img.shape and gpu.counts["replay"] == 3  # graphs replayed
    want, want_edges = ort_painter.inpaint(img, mask, return_edges=True)
    _compare(got, want)
    assert np.mean(np.abs(edges - want_edges) > 0.5) < 0.001


def test_crop_strategy_and_batches_on_tensorrt(engines, gpu, ort_painter):
    big, big_mask = photo_and_mask("coffee", 256, 2, hole_ratio=(0.02, 0.05))
    big = cv2.resize(big, (700, 600))  # above max_side 512: the crop strategy cuts boxes from 32 px up
    big_mask = np.zeros((600, 700), np.uint8)
    big_mask[40:52, 30:44] = 1
    big_mask[400:520, 500:640] = 1
    with Inpainter.from_dir(engines, backend="tensorrt") as painter:
        _compare(painter.inpaint(big, big_mask, strategy="crop"), ort_painter.inpaint(big, big_mask, strategy="crop"))
        pairs = [photo_and_mask(name, 128, i) for i, name in enumerate(("astronaut", "coffee", "chelsea",
                                                                             "astronaut", "coffee", "chelsea"))]
        got = painter.inpaint_batch([p[0] for p in pairs], [p[1] for p in pairs])  # 6 images: batches of 4 + 2
    want = ort_painter.inpaint_batch([p[0] for p in pairs], [p[1] for p in pairs])
    for g, w in zip(got, want):
        _compare(g, w)


def test_tf32_is_cleared_unless_asked(engines, tmp_path, monkeypatch):
    from ec_export.engine import build_engine
    from ec_runtime.tensorrt_support import EngineSidecar
    from tests.ec_runtime.trt_double import read_plan

    install(monkeypatch)
    plain = build_engine(engines / "canny.onnx", tmp_path / "a.engine")
    fast = build_engine(engines / "canny.onnx", tmp_path / "b.engine", tf32=True)
    assert "TF32" not in read_plan(plain.read_bytes())[0]["flags"] and EngineSidecar.read(plain).tf32 is False
    assert "TF32" in read_plan(fast.read_bytes())[0]["flags"] and EngineSidecar.read(fast).tf32 is True


def test_shapes_outside_the_profile_are_refused_before_the_gpu_with_a_real_option(engines, gpu):
    from ec_export.cli import main

    with Inpainter.from_dir(engines, backend="tensorrt", strategy="original") as painter:
        img = np.zeros((600, 520, 3), np.uint8)
        mask = np.zeros((600, 520), np.uint8)
        mask[10:20, 10:20] = 1
        allocs = gpu.counts["alloc"]
        with pytest.raises(Exception, match=r"outside the engine's optimization profile .*--shapes 1x16x16,1x512x512,"
                                            r"4x600x520") as info:
            painter.inpaint(img, mask)
        assert gpu.counts["alloc"] == allocs and gpu.counts["htod"] == 0  # nothing reached the GPU
    option = info.value.args[0].split("`")[1].split()[2]
    assert option == "--shapes" and "--shapes" in CliRunner().invoke(main, ["engine", "--help"]).output


def test_auto_falls_back_to_onnxruntime_with_a_warning(engines, monkeypatch):
    install(monkeypatch, version="10.8.0")  # engines were built with 10.3.0
    with pytest.warns(RuntimeWarning, match=r"not used, running ONNX Runtime instead: .*10\.3\.0, but 10\.8\.0"):
        painter = Inpainter.from_dir(engines, backend="auto")
    assert painter.backend == "onnxruntime"
    painter.close()
    from ec_runtime.errors import EngineMismatchError

    with pytest.raises(EngineMismatchError):  # only an explicit choice fails
        Inpainter.from_dir(engines, backend="tensorrt")
    for name in ("pycuda", "pycuda.driver"):
        monkeypatch.setitem(__import__("sys").modules, name, None)
    with pytest.warns(RuntimeWarning, match="pycuda"):
        assert Inpainter.from_dir(engines, backend="auto").backend == "onnxruntime"


def _bench_stages(export, backend):
    from benchmarks.bench import BenchConfig, run_bench

    cfg = BenchConfig(export_dir=export, backends=(backend,), precisions=("fp32",), sizes=(64,), batches=(2,),
                      warmup=1, iters=2, threads=1, ceiling_gflops=None)
    result = run_bench(cfg, progress=False)
    assert not result["skipped"], result["skipped"]
    return result["rows"][0]["stages_ms"]


def test_ec_bench_times_transfers_and_engines_on_tensorrt(engines, gpu):
    stages = _bench_stages(engines, "tensorrt")
    assert {"h2d", "canny", "edge", "inpaint", "d2h", "host"} <= set(stages)
    assert all(np.isfinite(v) and v >= 0 for v in stages.values())


def test_ec_bench_times_transfers_and_sessions_on_onnxruntime_cuda(engines, monkeypatch):
    """The ORT-CUDA path (IO binding, OrtValues on the device) with the device swapped for the host."""
    import onnxruntime as ort

    from ec_runtime.runners import OrtRunner

    def infer_on_device(self, feed):
        host = {k: v.numpy() if isinstance(v, ort.OrtValue) else v for k, v in feed.items()}
        return {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in self.infer(host).items()}

    monkeypatch.setattr(OrtRunner, "on_cuda", property(lambda self: self.session is not None))
    monkeypatch.setattr(OrtRunner, "to_device", lambda self, a: ort.OrtValue.ortvalue_from_numpy(
        np.ascontiguousarray(a, np.float32)))
    monkeypatch.setattr(OrtRunner, "infer_on_device", infer_on_device)
    stages = _bench_stages(engines, "onnxruntime")
    assert {"h2d", "canny", "edge", "inpaint", "d2h", "host"} <= set(stages)
    assert stages["canny"] > 0 and stages["inpaint"] > 0


def test_engines_built_into_a_subfolder_are_recorded_relative_to_the_export(lite_export, tmp_path, monkeypatch):
    from ec_export.cli import main
    from ec_runtime.exportdir import ExportDir

    install(monkeypatch)
    export = tmp_path / "export"
    shutil.copytree(lite_export, export)
    result = CliRunner().invoke(main, ["engine", str(export / "canny.onnx"), "-o", str(export / "plans")])
    assert result.exit_code == 0 and "recorded in" in result.output, result.output
    entry = json.loads((export / "export.json").read_text())["engines"]["canny.fp32"]
    assert entry == {"engine": "plans/canny.engine", "sidecar": "plans/canny.engine.json"}
    assert ExportDir.open(export).engine_path("canny", "fp32") == export / "plans/canny.engine"
    result = CliRunner().invoke(main, ["engine", str(export / "edge.onnx"), "-o", str(tmp_path / "elsewhere")])
    assert result.exit_code == 0 and "not recorded" in result.output  # the runtime follows no path out of DIR
    assert "edge.fp32" not in json.loads((export / "export.json").read_text())["engines"]
    loose = tmp_path / "loose.onnx"
    shutil.copy(lite_export / "canny.onnx", loose)  # not part of an export directory: nothing to record
    result = CliRunner().invoke(main, ["engine", str(loose)])
    assert result.exit_code == 0 and "recorded" not in result.output


def test_ec_inpaint_reports_the_fallback_as_one_warning_line(engines, monkeypatch, tmp_path):
    from ec_runtime.cli import main

    install(monkeypatch, version="10.8.0")
    img, mask = photo_and_mask("astronaut", 64, 0)
    cv2.imwrite(str(tmp_path / "a.png"), img[..., ::-1])
    cv2.imwrite(str(tmp_path / "m.png"), mask * 255)
    result = CliRunner().invoke(main, [str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png"), "-o",
                                       str(tmp_path / "out.png"), "--model", str(engines)])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if "not used" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: TensorRT engines in ")
    assert "with onnxruntime" in result.output and "Traceback" not in result.output


def test_one_tensorrt_inpainter_serves_several_threads(engines, gpu, ort_painter):
    from concurrent.futures import ThreadPoolExecutor

    pairs = [photo_and_mask(name, size, i) for i, (name, size) in
             enumerate((("astronaut", 64), ("coffee", 96), ("chelsea", 64), ("astronaut", 96)))]
    with Inpainter.from_dir(engines, backend="tensorrt", cuda_graph=True) as painter:
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda p: painter.inpaint(*p), pairs * 2))
    for g, p in zip(got, pairs * 2):
        assert _compare(g, ort_painter.inpaint(*p)) == 0
