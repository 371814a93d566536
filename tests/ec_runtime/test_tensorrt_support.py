import sys
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


def test_version_compatible_engines_run_on_the_same_or_a_later_tensorrt():
    built = _sidecar(version_compatible=True)  # built with 10.3.0
    for later in ("10.3.0", "10.9.1", "10.13.0.35", "11.0.0"):  # 10 -> 11 is supported across majors
        built.check(_fake_trt(version=later), None)
    for other in ("10.2.0", "9.3.0", "12.0.0"):  # older, or a major TensorRT does not support
        with pytest.raises(EngineMismatchError, match="same or a later TensorRT"):
            built.check(_fake_trt(version=other), None)
    with pytest.raises(EngineMismatchError, match="10.3.0, but 10.4.0"):  # without the flag: exact
        _sidecar().check(_fake_trt(version="10.4.0"), None)
    rtx = _sidecar(tensorrt_module="tensorrt_rtx_bindings", tensorrt_version="1.2.0", version_compatible=True)
    with pytest.raises(EngineMismatchError):  # TensorRT-RTX engines need the exact release
        rtx.check(_fake_trt(name="tensorrt_rtx_bindings", version="1.3.0"), None)


def test_tensorrt_rtx_sdk_module_name_is_found_and_loads_bindings_engines(monkeypatch):
    sdk = types.ModuleType("tensorrt_rtx")
    sdk.__version__ = "1.2.0"
    for name, mod in (("tensorrt", None), ("tensorrt_rtx_bindings", None), ("tensorrt_rtx", sdk)):
        monkeypatch.setitem(sys.modules, name, mod)
    assert import_tensorrt() is sdk
    assert import_tensorrt(prefer="tensorrt_rtx_bindings") is sdk  # same family, other wheel
    _sidecar(tensorrt_module="tensorrt_rtx_bindings", tensorrt_version="1.2.0").check(sdk, None)


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
