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
    return json.loads((out / "export.json").read_text())


@pytest.mark.slow
def test_fp16_and_int8_meet_their_gates_on_trained_weights(demo_export):
    acc = demo_export["accuracy"]
    for kind in ("edge", "inpaint"):
        assert acc["fp16"]["models"][kind]["psnr_db"] >= 45, acc["fp16"]
        assert acc["int8"]["models"][kind]["psnr_db"] >= 30, acc["int8"]


def test_demo_checkpoint_is_small_and_loads():
    from ec_train.checkpoints import load_generator

    path = demo_checkpoint()
    assert path.stat().st_size < 8 * 2**20
    edge, inpaint = load_generator(path, "edge"), load_generator(path, "inpaint")
    assert sum(p.numel() for p in inpaint.parameters()) == 1_519_651
    assert edge.encoder[1].weight_orig.dtype.is_floating_point
