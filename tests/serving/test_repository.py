"""``ec-export triton``: repository layout and every config validated offline against Triton's ModelConfig."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ec_export.cli import main
from ec_export.errors import ExportError
from ec_export.triton import ENSEMBLES, KINDS, RepoOptions, write_repository

MODELS = (*KINDS, *ENSEMBLES)


def _parse(path) -> model_config_pb2.ModelConfig:
    """text_format.Parse rejects unknown fields, wrong types and bad enum values."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def export_with_engines(tiny_export3, tmp_path_factory):
    """The tiny export plus engine entries for every stage and precision. The engine files are test
    data (a few bytes, never loaded); the writer copies them and reads their sidecars."""
    root = tmp_path_factory.mktemp("with_engines") / "export"
    shutil.copytree(tiny_export3, root)
    manifest = json.loads((root / "export.json").read_text())
    manifest["engines"] = {}
    for kind in KINDS:
        for precision in ("fp32", "fp16", "int8"):
            name = f"{kind}.{precision}.engine"
            (root / name).write_bytes(b"test data, not an engine")
            (root / f"{name}.json").write_text(json.dumps({
                "tensorrt_module": "tensorrt", "tensorrt_version": "10.11.0.33", "precision": precision,
                "profile": {"min": [1, 64, 64], "opt": [2, 256, 256], "max": [4, 512, 512]},
                "gpu_name": "NVIDIA L4", "compute_capability": "8.9"}))
            manifest["engines"][f"{kind}.{precision}"] = {"engine": name, "sidecar": f"{name}.json"}
    (root / "export.json").write_text(json.dumps(manifest))
    return root


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt", "python"])
def test_every_config_parses_as_a_triton_model_config(export_with_engines, tmp_path, backend, precision):
    repo = tmp_path / "repo"
    info = write_repository(export_with_engines, repo, backend=backend, precision=precision)
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted(MODELS)
    expected_batch = 4 if backend == "tensorrt" else 8  # a plan serves up to its profile's max N
    for name in MODELS:
        config = _parse(repo / name / "config.pbtxt")
        assert config.name == name and config.max_batch_size == expected_batch
        assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in [*config.input, *config.output])
        if name in ENSEMBLES:
            assert config.platform == "ensemble"
            steps = config.ensemble_scheduling.step
            assert [s.model_name for s in steps] == ["canny", "edge", "inpaint"]
            assert steps[2].input_map["edges"] == ENSEMBLES[name]
            assert [t.name for t in config.input] == ["image", "gray", "mask"]
            continue
        assert config.backend == backend and config.dynamic_batching.max_queue_delay_microseconds == 1000
        kind = model_config_pb2.ModelInstanceGroup.KIND_GPU if backend == "tensorrt" else \
            model_config_pb2.ModelInstanceGroup.KIND_CPU
        assert config.instance_group[0].kind == kind and config.instance_group[0].count == 1
        payload = {"tensorrt": "model.plan"}.get(backend, "model.onnx")
        assert (repo / name / "1" / payload).is_file()
        assert (repo / name / "1" / "model.py").is_file() == (backend == "python")
    source = info["source"]["files"]
    if backend != "tensorrt":  # the files the runtime itself would load at this precision
        listed = json.loads((export_with_engines / "export.json").read_text())["models"]
        assert source == {k: listed[k][precision] for k in KINDS}
    readme = (repo / "README.md").read_text()
    assert ("TensorRT 10.11.0.33" in readme) == (backend == "tensorrt")


def test_ensemble_wiring_matches_the_runtime_contract(tiny_export3, tmp_path):
    write_repository(tiny_export3, tmp_path / "repo", backend="python")
    config = _parse(tmp_path / "repo" / "edgeconnect" / "config.pbtxt")
    produced = {"image", "gray", "mask"}
    for step in config.ensemble_scheduling.step:
        stage = _parse(tmp_path / "repo" / step.model_name / "config.pbtxt")
        assert set(step.input_map) == {t.name for t in stage.input}
        assert set(step.output_map) == {t.name for t in stage.output}
        assert set(step.input_map.values()) <= produced
        produced |= set(step.output_map.values())
    assert {t.name for t in config.output} <= produced


def test_gpu_options_and_instances(tiny_export3, tmp_path):
    write_repository(tiny_export3, tmp_path / "repo", kind="gpu", instances=2, max_batch=4, queue_delay_us=500,
                     ort_trt_accelerator=True)
    config = _parse(tmp_path / "repo" / "edge" / "config.pbtxt")
    assert config.instance_group[0].count == 2 and config.max_batch_size == 4
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    accel = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP16"
    one = tmp_path / "one"
    write_repository(tiny_export3, one, max_batch=1)
    assert not _parse(one / "edge" / "config.pbtxt").HasField("dynamic_batching")


@pytest.mark.parametrize("kw, message", [
    ({"backend": "tensorrt"}, "records no TensorRT engine"),
    ({"backend": "tensorrt", "kind": "cpu"}, "GPUs only"),
    ({"ort_trt_accelerator": True}, "--kind gpu"),
    ({"max_batch": 0}, "--max-batch"),
    ({"precision": "bf16"}, "--precision"),
])
def test_bad_options_are_refused_before_writing(tiny_export3, tmp_path, kw, message):
    with pytest.raises(ExportError, match=message):
        write_repository(tiny_export3, tmp_path / "repo", **kw)
    assert not (tmp_path / "repo").exists()


def test_rtx_engines_are_refused(export_with_engines, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(export_with_engines, export)
    side = export / "edge.fp32.engine.json"
    side.write_text(side.read_text().replace('"tensorrt"', '"tensorrt_rtx_bindings"'))
    with pytest.raises(ExportError, match="tensorrt_rtx_bindings"):
        write_repository(export, tmp_path / "repo", backend="tensorrt")


def test_never_overwrites_a_foreign_directory_but_replaces_its_own(tiny_export3, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        write_repository(tiny_export3, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    repo = tmp_path / "repo"
    write_repository(tiny_export3, repo, backend="python")
    write_repository(tiny_export3, repo, backend="onnxruntime")
    assert not (repo / "edge" / "1" / "model.py").exists()
    assert json.loads((repo / "ec-triton.json").read_text())["backend"] == "onnxruntime"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_cli_writes_a_repository_and_reports_errors_in_one_line(tiny_export3, tmp_path):
    result = CliRunner().invoke(main, ["triton", str(tiny_export3), "-o", str(tmp_path / "repo"),
                                       "--backend", "python", "--precision", "fp16", "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    assert "edgeconnect" in result.output and "ec-serve" in result.output
    assert _parse(tmp_path / "repo" / "inpaint" / "config.pbtxt").max_batch_size == 4
    bad = CliRunner().invoke(main, ["triton", str(tmp_path / "nowhere"), "-o", str(tmp_path / "r2")])
    assert bad.exit_code == 1 and "export directory not found" in bad.output and "Traceback" not in bad.output


def test_python_model_file_is_torch_free_and_uses_ort_runner():
    from ec_export.triton import PYTHON_MODEL

    text = PYTHON_MODEL.read_text()
    assert "import torch" not in text and "from ec_runtime.runners import OrtRunner" in text


def test_repo_options_defaults():
    assert RepoOptions().instance_kind == "cpu" and RepoOptions(backend="tensorrt").instance_kind == "gpu"
