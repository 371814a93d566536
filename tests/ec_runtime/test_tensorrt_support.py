import types

import pytest

from ec_runtime.errors import EngineMismatchError, MissingDependencyError, ModelNotFoundError
from ec_runtime.tensorrt_support import EngineSidecar, GpuInfo, import_tensorrt, sha256_file


def _fake_trt(name="tensorrt", version="10.3.0"):
    return types.SimpleNamespace(__name__=name, __version__=version)


def _sidecar(**kw):
    base = dict(tensorrt_module="tensorrt", tensorrt_version="10.3.0", precision="fp16",
                profile={"min": [1, 256, 256], "opt": [1, 512, 512], "max": [4, 1024, 1024]},
                onnx_file="edge.fp16.onnx", onnx_sha256="ab" * 32, gpu_name="Orin", compute_capability="8.7")
    base.update(kw)
    return EngineSidecar(**base)


def test_sidecar_round_trip_and_matching_engine_passes(tmp_path):
    engine = tmp_path / "edge.fp16.engine"
    engine.write_bytes(b"plan")
    sc = _sidecar(engine_sha256=sha256_file(engine))
    sc.write(engine)
    back = EngineSidecar.read(engine)
    assert back == sc
    back.check(_fake_trt(), GpuInfo("Orin", "8.7"), engine)


@pytest.mark.parametrize("trt,gpu,match", [
    (_fake_trt(version="10.4.0"), GpuInfo("Orin", "8.7"), "built with tensorrt 10.3.0, but 10.4.0"),
    (_fake_trt(name="tensorrt_rtx_bindings"), GpuInfo("Orin", "8.7"), "built with tensorrt, but tensorrt_rtx_bindings"),
    (_fake_trt(), GpuInfo("NVIDIA H100", "9.0"), "compute capability 8.7"),
])
def test_mismatched_engines_are_refused(trt, gpu, match):
    with pytest.raises(EngineMismatchError, match=match):
        _sidecar().check(trt, gpu)


def test_version_compatible_engines_accept_the_same_major():
    _sidecar(version_compatible=True).check(_fake_trt(version="10.9.1"), None)
    with pytest.raises(EngineMismatchError):
        _sidecar(version_compatible=True).check(_fake_trt(version="11.0.0"), None)


def test_modified_engine_and_missing_sidecar(tmp_path):
    engine = tmp_path / "a.engine"
    engine.write_bytes(b"plan")
    sc = _sidecar(engine_sha256=sha256_file(engine))
    engine.write_bytes(b"other plan")
    with pytest.raises(EngineMismatchError, match="sha256"):
        sc.check(_fake_trt(), None, engine)
    with pytest.raises(ModelNotFoundError, match="a.engine.json"):
        EngineSidecar.read(engine)


def test_missing_tensorrt_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"ec-deploy\[trt\]"):
        import_tensorrt(prefer="tensorrt_definitely_missing")
