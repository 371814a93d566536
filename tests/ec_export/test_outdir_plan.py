"""planned_files must name every file an export writes (the CPU INT8 variant included)."""

from ec_export.outdir import planned_files


def test_int8_plans_the_cpu_int8_files_too():
    names = planned_files(("fp32", "int8"), fused=True, engines=True)
    assert {"edge.int8_cpu.onnx", "inpaint.int8_cpu.onnx", "pipeline.int8_cpu.onnx"} <= names
    assert "edge.int8_cpu.engine" not in names  # ONNX Runtime's CPU files get no TensorRT engine
    assert not any("int8_cpu" in n for n in planned_files(("fp32", "fp16"), fused=True, engines=True))


def test_a_file_the_plan_missed_never_lands_on_a_user_file(tmp_path):
    """Defence in depth: names written but not planned are checked for clashes before anything moves."""
    import pytest

    from ec_export.errors import ExportError
    from ec_export.outdir import ExportOutput

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "extra.onnx").write_text("the user's")
    out = ExportOutput(tmp_path / "out", planned={"edge.onnx"})
    staging = out.begin()
    for name in ("edge.onnx", "extra.onnx", "new.onnx", "export.json"):
        (staging / name).write_text("ours")
    with pytest.raises(ExportError, match="extra.onnx"):
        out.commit()
    out.abort()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["extra.onnx"]
    assert (tmp_path / "out" / "extra.onnx").read_text() == "the user's"

    out = ExportOutput(tmp_path / "out2", planned={"edge.onnx"})  # unplanned but clash-free names move in
    staging = out.begin()
    for name in ("edge.onnx", "new.onnx", "export.json"):
        (staging / name).write_text("ours")
    out.commit()
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["edge.onnx", "export.json", "new.onnx"]
