"""Inpainter on ONNX Runtime (CPU) against a torch reference built from ec_train modules."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import torch

from ec_runtime.errors import InputError, ModelNotFoundError
from ec_runtime.pipeline import Inpainter
from tests.helpers import photo_and_mask, psnr, to_tensors


@pytest.fixture(scope="module")
def painter(lite_export):
    with Inpainter.from_dir(lite_export, backend="onnxruntime", threads=2) as p:
        yield p


@pytest.fixture(scope="module")
def reference(lite_models, lite_export):
    """The EdgeConnect pipeline in torch: Canny with the known mask, folded generators, merge, composite."""
    from ec_train.canny import Canny
    from ec_train.networks import edge_generator_input, inpaint_generator_input, rgb_to_gray
    from ec_train.spectral import fold_spectral_norm

    edge, inpaint = (fold_spectral_norm(m).eval() for m in lite_models)
    manifest = json.loads((lite_export / "export.json").read_text())
    canny = Canny(**(manifest.get("settings", {}).get("canny") or {}))

    @torch.no_grad()
    def run(image: torch.Tensor, mask: torch.Tensor, merge: str = "training") -> dict[str, np.ndarray]:
        gray = rgb_to_gray(image)
        edges = canny(gray, 1 - mask)
        raw = edge(edge_generator_input(gray, edges, mask))
        merged = raw * mask + edges * (1 - mask)
        out = inpaint(inpaint_generator_input(image, merged if merge == "training" else raw, mask, inpaint))
        final = out * mask + image * (1 - mask)
        return {"image_out": final.numpy(), "edges": edges.numpy(), "edges_out": merged.numpy(),
                "edges_raw": raw.numpy()}

    return run


@pytest.mark.parametrize("name,seed", [("astronaut", 0), ("coffee", 1), ("chelsea", 2), ("rocket", 3)])
def test_matches_torch_reference(painter, reference, name, seed):
    img, mask = photo_and_mask(name, 128, seed, hole_ratio=(0.1, 0.5))
    assert 0.1 <= mask.mean() <= 0.5
    image, m = to_tensors(img, mask)
    ref = reference(image, m)
    got = painter.run(image.numpy(), m.numpy())
    assert np.mean(got["edges"] != ref["edges"]) < 1e-3  # Canny on the device agrees pixel for pixel
    assert psnr(got["edges_out"], ref["edges_out"]) >= 60
    value = psnr(got["image_out"], ref["image_out"])
    assert value >= 60, f"{name}: runtime vs torch reference PSNR {value:.1f} dB"
    # the uint8 API on the same pair: at most a rounding step away from the reference
    out = painter.inpaint(img, mask, strategy="original")
    expected = np.rint(ref["image_out"][0].transpose(1, 2, 0) * 255)
    assert np.abs(out.astype(np.float64) - expected).max() <= 1
    assert np.array_equal(out[mask == 0], img[mask == 0])


def test_official_edge_merge_feeds_the_raw_map(lite_export, reference):
    img, mask = photo_and_mask("astronaut", 96, 5)
    image, m = to_tensors(img, mask)
    with Inpainter.from_dir(lite_export, backend="onnxruntime", edge_merge="official") as official:
        got = official.run(image.numpy(), m.numpy())["image_out"]
    assert psnr(got, reference(image, m, merge="official")["image_out"]) >= 60
    assert psnr(got, reference(image, m)["image_out"]) < 60  # the conventions really differ


def test_empty_mask_returns_input_without_model_call(painter, monkeypatch):
    img, _ = photo_and_mask("coffee", 64, 0)
    calls = []
    monkeypatch.setattr(painter, "run", lambda *a, **k: calls.append(1))
    out, edges = painter.inpaint(img, np.zeros(img.shape[:2], bool), return_edges=True)
    assert np.array_equal(out, img) and out is not img
    assert not edges.any()
    assert painter.inpaint_batch([img, img], np.zeros(img.shape[:2], np.uint8))[1].tobytes() == img.tobytes()
    assert calls == []


def test_full_mask_and_odd_sizes(painter):
    img, _ = photo_and_mask("chelsea", 64, 0)
    full = painter.inpaint(img, np.ones((64, 64), np.uint8))
    assert full.shape == img.shape and not np.array_equal(full, img)
    for h, w in [(61, 50), (17, 33), (16, 16)]:
        part = np.ascontiguousarray(img[:h, :w])
        mask = np.zeros((h, w), bool)
        mask[h // 3: h // 2 + 2, w // 4: w // 2] = True
        out = painter.inpaint(part, mask)
        assert out.shape == (h, w, 3)
        assert np.array_equal(out[~mask], part[~mask])


def test_bad_inputs_are_clear_errors(painter):
    img, mask = photo_and_mask("rocket", 64, 0)
    with pytest.raises(InputError, match="mask is 32x32 but the image is 64x64"):
        painter.inpaint(img, mask[:32, :32])
    with pytest.raises(InputError, match="at least 16 pixels"):
        painter.inpaint(img[:15, :40], mask[:15, :40])
    with pytest.raises(InputError, match="H x W .*mask"):
        painter.inpaint(img, np.zeros((64, 64, 5), np.uint8))
    # color masks follow the same rule as mask files (brightest channel above half scale)
    assert np.array_equal(painter.inpaint(img, np.dstack([mask * 255] * 3)), painter.inpaint(img, mask))


def test_gray_rgba_and_16bit_arrays_are_converted(painter):
    img, mask = photo_and_mask("astronaut", 64, 3)
    rgba = np.dstack([img, np.full((64, 64), 7, np.uint8)])
    assert np.array_equal(painter.inpaint(rgba, mask), painter.inpaint(img, mask))
    wide = img.astype(np.uint16) * 257
    assert np.array_equal(painter.inpaint(wide, mask), painter.inpaint(img, mask))
    gray = img[..., 1]
    out = painter.inpaint(gray, mask.astype(bool))
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out[mask == 0], np.repeat(gray[..., None], 3, 2)[mask == 0])


def test_batch_equals_single_calls(painter):
    pairs = [photo_and_mask(n, 64, i) for i, n in enumerate(["astronaut", "coffee", "chelsea"])]
    pairs.append(photo_and_mask("rocket", 80, 4))
    batched = painter.inpaint_batch([p[0] for p in pairs], [p[1] for p in pairs])
    for (img, mask), out in zip(pairs, batched):
        assert np.array_equal(out, painter.inpaint(img, mask))


def test_four_threads_match_sequential_calls(painter):
    pairs = [photo_and_mask(n, 64, i) for i, n in enumerate(["astronaut", "coffee", "chelsea", "rocket"])]
    sequential = [painter.inpaint(img, mask) for img, mask in pairs]
    results: dict[int, list] = {i: [] for i in range(4)}
    errors = []
    barrier = threading.Barrier(4)

    def work(i):
        try:
            barrier.wait()
            for _ in range(2):
                for j in range(4):
                    results[i].append((j, painter.inpaint(*pairs[(i + j) % 4])))
        except Exception as exc:  # surfaced below with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, outs in results.items():
        assert len(outs) == 8
        for j, out in outs:
            assert np.array_equal(out, sequential[(i + j) % 4])


def test_missing_export_directory_and_files(tmp_path, lite_export):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "nowhere")) as err:
        Inpainter.from_dir(tmp_path / "nowhere")
    assert "ec-export" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="export.json"):
        Inpainter.from_dir(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(lite_export, broken)
    (broken / "edge.onnx").unlink()
    with pytest.raises(ModelNotFoundError, match=str(broken / "edge.onnx")):
        Inpainter.from_dir(broken, backend="onnxruntime")
    with pytest.raises(ModelNotFoundError, match="no edge model at int8"):
        Inpainter.from_dir(lite_export, precision="int8")
    with pytest.raises(ModelNotFoundError, match="no TensorRT engines"):
        Inpainter.from_dir(lite_export, backend="tensorrt")


@pytest.mark.slow
def test_fp16_export_runs_its_own_files(tmp_path_factory):
    from tests.ec_runtime.conftest import make_export

    out = tmp_path_factory.mktemp("fp16_export")
    make_export(out, precisions=("fp32", "fp16"))
    img, mask = photo_and_mask("coffee", 96, 4)
    with Inpainter.from_dir(out, precision="fp16") as half, Inpainter.from_dir(out) as full:
        assert half.stages.runners["edge"].path.name == "edge.fp16.onnx"
        assert half.stages.runners["inpaint"].path.name == "inpaint.fp16.onnx"
        got, want = half.inpaint(img, mask), full.inpaint(img, mask)
    assert np.array_equal(got[mask == 0], img[mask == 0])
    assert 45 <= psnr(got, want, 255) < float("inf")  # close to fp32, yet really a different graph


def test_large_image_strategies_with_the_models(painter):
    small_side = Inpainter(painter.stages, backend=painter.backend, precision="fp32", max_side=64)
    from ec_train.samples import sample_photo

    img = sample_photo("astronaut", (128, 160))
    mask = np.zeros((128, 160), bool)
    mask[20:40, 30:60] = True
    mask[90:110, 120:150] = True
    for strategy in ("original", "resize", "crop"):
        out, edges = small_side.inpaint(img, mask, return_edges=True, strategy=strategy)
        assert out.shape == img.shape and edges.shape == mask.shape
        assert np.array_equal(out[~mask], img[~mask]) and not np.array_equal(out[mask], img[mask])


def test_int8_picks_the_cpu_files_on_the_cpu_provider(tmp_path):
    from ec_runtime.pipeline import ExportDir
    from ec_runtime.runners import primary_provider

    both = {k: {"fp32": f"{k}.onnx", "int8": f"{k}.int8.onnx", "int8_cpu": f"{k}.int8_cpu.onnx"}
            for k in ("edge", "inpaint")}
    export = ExportDir(tmp_path, {"models": both})
    assert export.model_variant("int8", "CPUExecutionProvider") == "int8_cpu"
    assert export.model_variant("int8", "TensorrtExecutionProvider") == "int8"
    assert export.model_variant("int8", "CUDAExecutionProvider") == "int8"
    assert export.model_variant("fp32", "CPUExecutionProvider") == "fp32"
    older = ExportDir(tmp_path, {"models": {k: {"fp32": v["fp32"], "int8": v["int8"]} for k, v in both.items()}})
    assert older.model_variant("int8", "CPUExecutionProvider") == "int8"  # exports made before the CPU variant
    assert primary_provider(None) == primary_provider("cpu") == "CPUExecutionProvider"
