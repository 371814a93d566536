"""planned_files must name every file an export writes (the CPU INT8 variant included)."""

from ec_export.outdir import planned_files


def test_int8_plans_the_cpu_int8_files_too():
    names = planned_files(("fp32", "int8"), fused=True, engines=True)
    assert {"edge.int8_cpu.onnx", "inpaint.int8_cpu.onnx", "pipeline.int8_cpu.onnx"} <= names
    assert "edge.int8_cpu.engine" not in names  # ONNX Runtime's CPU files get no TensorRT engine
    assert not any("int8_cpu" in n for n in planned_files(("fp32", "fp16"), fused=True, engines=True))
