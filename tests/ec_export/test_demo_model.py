"""The shipped demo model: trained weights make the precision gates real."""

import json

import pytest

from ec_train.pretrained import demo_checkpoint


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    from ec_export.exporter import export_checkpoints

    out = tmp_path_factory.mktemp("demo") / "export"
    export_checkpoints([demo_checkpoint()], out, precisions=("fp32", "fp16", "int8"), calib_size=128,
                       accuracy_size=128, progress=False)
    return out


@pytest.mark.slow
def test_fp16_and_int8_meet_their_gates_on_trained_weights(demo_export):
    acc = json.loads((demo_export / "export.json").read_text())["accuracy"]
    for kind in ("edge", "inpaint"):
        assert acc["fp16"]["models"][kind]["psnr_db"] >= 45, acc["fp16"]
        assert acc["int8"]["models"][kind]["psnr_db"] >= 30, acc["int8"]


def test_demo_checkpoint_is_small_and_loads():
    from ec_train.checkpoints import load_generator

    path = demo_checkpoint()
    assert path.stat().st_size < 8 * 2**20
    edge, inpaint = load_generator(path, "edge"), load_generator(path, "inpaint")
    assert sum(p.numel() for p in inpaint.parameters()) == 1_521_219  # lite-fill: 5-channel first conv
    assert type(inpaint).__name__ == "FillInpaintGenerator"
    assert edge.encoder[1].weight_orig.dtype.is_floating_point


@pytest.mark.slow
def test_cpu_int8_is_within_40db_of_fp32_on_photos(demo_export):
    """ONNX Runtime on the CPU runs int8 with the U8S8 files; end to end they stay >= 40 dB from FP32."""
    from ec_runtime import Inpainter
    from tests.helpers import photo_and_mask, psnr

    acc = json.loads((demo_export / "export.json").read_text())["accuracy"]["int8_cpu"]
    for kind in ("edge", "inpaint"):
        assert acc["models"][kind]["psnr_db"] >= 40, acc
    with Inpainter.from_dir(demo_export, backend="onnxruntime", precision="int8", strategy="original") as q, \
            Inpainter.from_dir(demo_export, backend="onnxruntime", strategy="original") as ref:
        assert q.model_variant == "int8_cpu"
        assert q.stages.runners["inpaint"].path.name == "inpaint.int8_cpu.onnx"
        for name, seed in (("rocket", 11), ("chelsea", 12), ("astronaut", 13)):
            img, mask = photo_and_mask(name, 256, seed)
            assert psnr(q.inpaint(img, mask), ref.inpaint(img, mask), 255) >= 40, name


@pytest.mark.slow
def test_the_shipped_model_beats_opencv_on_held_out_photos():
    """The bundled FP32 export against cv2.inpaint (TELEA and NS) on photos it never trained on:
    a smaller form of ``ec-eval --size 256`` (2 photos x 2 holes per bin) that guards the target."""
    import cv2

    from benchmarks.quality import eval_cases, evaluate, opencv_method
    from ec_runtime import Inpainter
    from ec_runtime.cli import DEMO_MODEL_DIR
    from ec_train.samples import sample_photo

    photos = {name: sample_photo(name, 256) for name in ("astronaut", "coffee")}
    cases = [c for c in eval_cases(photos, masks_per_bin=2, seed=0) if c.bin[0] >= 0.2]
    with Inpainter.from_dir(DEMO_MODEL_DIR, backend="onnxruntime", strategy="original") as ours:
        rows = evaluate({"ours": ours.inpaint, "TELEA": opencv_method(cv2.INPAINT_TELEA),
                         "NS": opencv_method(cv2.INPAINT_NS)}, cases, progress=False)
    score = {(r["method"], r["holes"]): (r["psnr_db"], r["ssim"]) for r in rows}
    for holes in ("20-30%", "30-40%", "40-50%"):
        for baseline in ("TELEA", "NS"):
            assert score["ours", holes][0] > score[baseline, holes][0], (holes, baseline, score)
            assert score["ours", holes][1] > score[baseline, holes][1], (holes, baseline, score)
