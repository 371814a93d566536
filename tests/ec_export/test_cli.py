"""ec-export: training checkpoints, official pairs, user errors, and the torch-free engine command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from ec_export.cli import main
from ec_train.checkpoints import TRAIN_FORMAT, atomic_save, save_official
from ec_train.registry import create_model

BLOCK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(name + ' is blocked')
sys.meta_path.insert(0, _Block())
sys.argv = ['ec-export'] + {args!r}
from ec_export.cli import main
main()
"""


def _run_blocked(blocked, args):
    code = BLOCK.format(blocked=tuple(blocked), args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lite_pair():
    torch.manual_seed(0)
    return create_model("lite", "edge"), create_model("lite", "inpaint")


@pytest.fixture(scope="module")
def train_checkpoint(lite_pair, tmp_path_factory):
    edge, inpaint = lite_pair
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    atomic_save({"format": TRAIN_FORMAT, "iteration": 10,
                 "models": {"edge_generator": edge.state_dict(), "inpaint_generator": inpaint.state_dict()}}, path)
    return path


def _invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_is_instant_and_lists_commands():
    result = _invoke(["--help"])
    assert result.exit_code == 0 and "engine" in result.output and "export" in result.output


@pytest.mark.slow
def test_fp16_export_of_a_training_checkpoint(train_checkpoint, tmp_path):
    result = _invoke(["--fp16", "-q", "--canny-iterations", "8", train_checkpoint, "-o", tmp_path / "out"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "out" / "export.json").read_text())
    assert info["source"]["checkpoints"][0]["sha256"] and info["source"]["architecture"]["residual_blocks"] == 4
    assert info["accuracy"]["fp16"]["psnr_db"] >= 45
    for name in ("canny.onnx", "edge.onnx", "inpaint.onnx", "edge.fp16.onnx", "inpaint.fp16.onnx", "canny.fp16.onnx"):
        assert (tmp_path / "out" / name).is_file()


@pytest.mark.slow
def test_export_of_an_official_pair_directory(lite_pair, tmp_path):
    save_official(*lite_pair, tmp_path / "official")
    result = _invoke(["-q", "--canny-iterations", "8", tmp_path / "official", "-o", tmp_path / "out"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "out" / "export.json").read_text())
    assert [c["path"].rsplit("/", 1)[-1] for c in info["source"]["checkpoints"]] == \
        ["EdgeModel_gen.pth", "InpaintingModel_gen.pth"]


def test_mismatched_pairs_are_refused(lite_pair, tmp_path):
    edge, _ = lite_pair
    save_official(edge, None, tmp_path / "a")
    save_official(edge, None, tmp_path / "b")
    result = _invoke([tmp_path / "a" / "EdgeModel_gen.pth", tmp_path / "b" / "EdgeModel_gen.pth", "-o", tmp_path / "o"])
    assert result.exit_code != 0 and "one edge and one inpaint generator, got edge" in result.output
    save_official(None, create_model("edgeconnect", "inpaint"), tmp_path / "a")
    result = _invoke([tmp_path / "a" / "EdgeModel_gen.pth", tmp_path / "a" / "InpaintingModel_gen.pth",
                      "-o", tmp_path / "o"])
    assert result.exit_code != 0 and "do not belong together" in result.output
    assert not (tmp_path / "o").exists()


def test_user_errors(train_checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    result = _invoke([train_checkpoint, "--int8", "--calib", tmp_path / "empty", "-o", tmp_path / "o"])
    assert result.exit_code != 0 and "calibration directory" in result.output and "no readable images" in result.output
    result = _invoke([train_checkpoint, "--engine", "--shapes", "1x256x250,1x512x512,1x1024x1024", "-o", tmp_path / "o"])
    assert result.exit_code != 0 and "multiples of 4" in result.output
    assert not (tmp_path / "o").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("x")
    (tmp_path / "notes" / "edge.onnx").write_text("the user's own model")  # a name the export would write
    result = _invoke([train_checkpoint, "-o", tmp_path / "notes"])
    assert result.exit_code != 0 and "never overwrites" in result.output and "edge.onnx" in result.output
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["edge.onnx", "keep.txt"]
    assert (tmp_path / "notes" / "edge.onnx").read_text() == "the user's own model"


@pytest.mark.trt
def test_engine_command_runs_without_torch(tmp_path):
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g", [x], [y])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.fp16.onnx"))
    proc = _run_blocked(("torch", "onnx", "onnxruntime"),
                        ["engine", str(tmp_path / "m.fp16.onnx"), "--shapes", "1x32x32,1x64x64,1x64x64",
                         "--workspace", "64", "--timing-cache", str(tmp_path / "t.cache")])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "m.fp16.engine.json").read_text())["precision"] == "fp16"
    assert (tmp_path / "t.cache").is_file()


def test_engine_command_without_tensorrt_names_the_extra(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    proc = _run_blocked(("torch", "tensorrt", "tensorrt_rtx_bindings"),
                        ["engine", str(tmp_path / "m.onnx"), "--shapes", "1x32x32,1x64x64,1x64x64"])
    assert proc.returncode != 0
    assert "ec-deploy[trt]" in proc.stderr and "Traceback" not in proc.stderr


def test_engine_command_reports_parse_failures(tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07garbage")
    result = _invoke(["engine", tmp_path / "broken.onnx", "--shapes", "1x32x32,1x64x64,1x64x64"])
    assert result.exit_code != 0 and "could not parse" in result.output
