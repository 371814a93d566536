"""``ec-export triton``: an export directory -> a Triton Inference Server model repository.

The repository holds one model per stage (``canny``, ``edge``, ``inpaint``) and two ensembles
with the runtime's I/O contract::

    edgeconnect           image, gray, mask -> image_out, edges, edges_out, edges_raw
                          (stage 2 gets ``edges_out``: predicted edges inside the hole only)
    edgeconnect_official  the same, but stage 2 gets the raw stage-1 map ``edges_raw``

Backends: ``onnxruntime`` (``1/model.onnx``), ``tensorrt`` (``1/model.plan`` from the engines that
``ec-export engine`` recorded in ``export.json``) and ``python`` (``1/model.py`` running the
stage's ONNX file with ``ec_runtime``'s OrtRunner, for a CPU-only Triton). Torch-free::

    from ec_export.triton import write_repository
    write_repository("export", "repo", backend="python")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ec_export.errors import ExportError

BACKENDS = ("onnxruntime", "tensorrt", "python")
PRECISIONS = ("fp32", "fp16", "int8")
KINDS = ("canny", "edge", "inpaint")
INSTANCE_KINDS = ("cpu", "gpu")
MANIFEST = "ec-triton.json"
MANIFEST_FORMAT = "ec-deploy/triton-repository/v1"
ENSEMBLES = {"edgeconnect": "edges_out", "edgeconnect_official": "edges_raw"}
PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")

# (name, channels) of every model's inputs and outputs: the runtime's ONNX I/O contract.
STAGE_IO: dict[str, tuple[list[tuple[str, int]], list[tuple[str, int]]]] = {
    "canny": ([("gray", 1), ("mask", 1)], [("edges", 1)]),
    "edge": ([("gray", 1), ("edges", 1), ("mask", 1)], [("edges_out", 1), ("edges_raw", 1)]),
    "inpaint": ([("image", 3), ("edges", 1), ("mask", 1)], [("image_out", 3)]),
}
ENSEMBLE_IO = ([("image", 3), ("gray", 1), ("mask", 1)],
               [("image_out", 3), ("edges", 1), ("edges_out", 1), ("edges_raw", 1)])


@dataclass(frozen=True)
class RepoOptions:
    """What ``ec-export triton`` was asked for; validated by :meth:`check`."""

    backend: str = "onnxruntime"
    precision: str = "fp32"
    max_batch: int = 8
    instances: int = 1
    kind: str | None = None  # None: gpu for tensorrt, else cpu
    queue_delay_us: int = 1000
    ort_trt_accelerator: bool = False
    threads: int = 0  # python backend: ONNX Runtime intra-op threads per instance (0: its default)

    @property
    def instance_kind(self) -> str:
        return self.kind or ("gpu" if self.backend == "tensorrt" else "cpu")

    def check(self) -> None:
        if self.backend not in BACKENDS:
            raise ExportError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ExportError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.kind is not None and self.kind not in INSTANCE_KINDS:
            raise ExportError(f"--kind must be cpu or gpu, got {self.kind!r}")
        for name, value, low in (("--max-batch", self.max_batch, 1), ("--instances", self.instances, 1),
                                 ("--queue-delay-us", self.queue_delay_us, 0), ("--threads", self.threads, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ExportError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.backend == "tensorrt" and self.instance_kind != "gpu":
            raise ExportError("the tensorrt backend runs on GPUs only: drop --kind cpu, or use --backend onnxruntime")
        if self.ort_trt_accelerator and (self.backend != "onnxruntime" or self.instance_kind != "gpu"):
            raise ExportError("--ort-trt-accelerator applies to --backend onnxruntime with --kind gpu only")


# --- config.pbtxt text ---------------------------------------------------------------------------
def _tensors(field: str, tensors: list[tuple[str, int]]) -> str:
    rows = [f'  {{ name: "{n}" data_type: TYPE_FP32 dims: [ {c}, -1, -1 ] }}' for n, c in tensors]
    return f"{field} [\n" + ",\n".join(rows) + "\n]\n"


def stage_config(kind: str, opts: RepoOptions, max_batch: int | None = None) -> str:
    """The ``config.pbtxt`` of one stage model."""
    inputs, outputs = STAGE_IO[kind]
    max_batch = opts.max_batch if max_batch is None else max_batch
    head = {"onnxruntime": 'backend: "onnxruntime"\ndefault_model_filename: "model.onnx"\n',
            "tensorrt": 'backend: "tensorrt"\ndefault_model_filename: "model.plan"\n',
            "python": 'backend: "python"\n'}[opts.backend]
    text = f'name: "{kind}"\n{head}max_batch_size: {max_batch}\n' + _tensors("input", inputs) + _tensors("output", outputs)
    if max_batch > 1:
        text += f"dynamic_batching {{ max_queue_delay_microseconds: {opts.queue_delay_us} }}\n"
    text += f"instance_group [ {{ count: {opts.instances} kind: KIND_{opts.instance_kind.upper()} }} ]\n"
    if opts.backend == "python":
        text += f'parameters {{ key: "intra_op_threads" value: {{ string_value: "{opts.threads}" }} }}\n'
    if opts.ort_trt_accelerator:
        text += ("optimization { execution_accelerators { gpu_execution_accelerator: [ {\n"
                 '  name: "tensorrt"\n'
                 '  parameters { key: "precision_mode" value: "FP16" }\n'
                 '  parameters { key: "max_workspace_size_bytes" value: "2147483648" }\n'
                 '  parameters { key: "trt_engine_cache_enable" value: "1" }\n'
                 "} ] } }\n")
    return text


def ensemble_config(name: str, stage2_edges: str, max_batch: int) -> str:
    """The ``config.pbtxt`` of an ensemble wiring canny -> edge -> inpaint."""
    inputs, outputs = ENSEMBLE_IO

    def step(model: str, inp: dict[str, str], out: dict[str, str]) -> str:
        maps = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in inp.items())
        maps += "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in out.items())
        return f'    {{\n      model_name: "{model}"\n      model_version: -1\n{maps}    }}'

    steps = [step("canny", {"gray": "gray", "mask": "mask"}, {"edges": "edges"}),
             step("edge", {"gray": "gray", "edges": "edges", "mask": "mask"},
                  {"edges_out": "edges_out", "edges_raw": "edges_raw"}),
             step("inpaint", {"image": "image", "edges": stage2_edges, "mask": "mask"}, {"image_out": "image_out"})]
    return (f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {max_batch}\n' + _tensors("input", inputs)
            + _tensors("output", outputs) + "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n")


# --- sources -------------------------------------------------------------------------------------
def _manifest(export_dir: Path) -> dict:
    path = export_dir / "export.json"
    if not export_dir.is_dir():
        raise ExportError(f"export directory not found: {export_dir} (make one with `ec-export CHECKPOINT -o DIR`)")
    if not path.is_file():
        raise ExportError(f"{export_dir} has no export.json; it is not an export directory made by `ec-export`")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is not a readable export manifest: {exc}") from None


def _onnx_source(export_dir: Path, manifest: dict, kind: str, precision: str) -> Path:
    models = manifest.get("models", {}).get(kind, {})
    name = models.get(precision) or (models.get("fp32") if kind == "canny" else None)
    if name is None:
        raise ExportError(f"{export_dir / 'export.json'} lists no {kind} model at {precision} (has: "
                          f"{', '.join(sorted(models)) or 'none'}); re-export with `ec-export ... --{precision}`")
    path = export_dir / name
    if not path.is_file():
        raise ExportError(f"model file listed in {export_dir / 'export.json'} is missing: {path}")
    return path


def _engine_source(export_dir: Path, manifest: dict, kind: str, precision: str) -> tuple[Path, dict]:
    engines = manifest.get("engines") or {}
    entry = engines.get(f"{kind}.{precision}") or (engines.get(f"{kind}.fp32") if kind == "canny" else None)
    hint = (f"build them with `ec-export engine {export_dir}/<model>.onnx` using the TensorRT version of your "
            "Triton release, or use --backend onnxruntime")
    if not entry:
        raise ExportError(f"{export_dir / 'export.json'} records no TensorRT engine for {kind}.{precision}; {hint}")
    path, side = export_dir / entry["engine"], export_dir / entry.get("sidecar", entry["engine"] + ".json")
    if not path.is_file() or not side.is_file():
        raise ExportError(f"engine or sidecar listed in {export_dir / 'export.json'} is missing: {path}; {hint}")
    try:
        sidecar = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{side} is not a readable engine sidecar: {exc}") from None
    if sidecar.get("tensorrt_module") != "tensorrt":
        raise ExportError(f"{path} was built with {sidecar.get('tensorrt_module')}; Triton's tensorrt backend loads "
                          f"engines of the `tensorrt` module only; {hint}")
    return path, sidecar


# --- writing -------------------------------------------------------------------------------------
def _check_target(repo: Path) -> None:
    if repo.exists() and not repo.is_dir():
        raise ExportError(f"{repo} exists and is not a directory")
    if repo.is_dir() and any(repo.iterdir()) and not (repo / MANIFEST).is_file():
        raise ExportError(f"{repo} is not empty and is not a repository written by `ec-export triton` "
                          f"(no {MANIFEST}); choose another -o directory")


def _readme(opts: RepoOptions, info: dict) -> str:
    lines = [f"# Triton model repository ({opts.backend}, {opts.precision})", "",
             f"Written by `ec-export triton` from `{info['source']['export_dir']}`.", "",
             "| model | what |", "|---|---|",
             "| `edgeconnect` | ensemble: image, gray, mask -> image_out, edges, edges_out, edges_raw |",
             "| `edgeconnect_official` | the same; stage 2 gets the raw stage-1 edges (official test script) |",
             "| `canny`, `edge`, `inpaint` | the three stages |", "",
             "Serve it with `ec-serve REPO` (or `tritonserver --model-repository REPO`) and inpaint through it",
             "with `ec-inpaint ... --server http://HOST:8000` or `Inpainter.from_server(url)`.", ""]
    if opts.backend == "tensorrt":
        versions = sorted({s["tensorrt_version"] for s in info["engines"].values()})
        gpus = sorted({f"{s.get('gpu_name')} (sm {s.get('compute_capability')})" for s in info["engines"].values()})
        lines += [f"**TensorRT plans.** Built with TensorRT {', '.join(versions)} on {', '.join(gpus)}. A plan loads only",
                  "in a Triton release that ships this TensorRT version, on GPUs of this type: pick the Triton",
                  "container whose release notes list it, and rebuild the engines (`ec-export engine`) for every",
                  "other GPU type or Triton release.", ""]
    if opts.backend == "python":
        lines += ["**Python backend.** Each stage runs `1/model.onnx` with `ec_runtime`'s OrtRunner, so the Python",
                  "environment of the server needs `pip install ec-deploy` (numpy, onnxruntime, no torch).", ""]
    return "\n".join(lines)


def write_repository(export_dir: str | os.PathLike, repo: str | os.PathLike, opts: RepoOptions | None = None,
                     **kw) -> dict:
    """Write a Triton model repository for ``export_dir`` into ``repo`` and return its manifest.

    ``opts`` (or keyword arguments of :class:`RepoOptions`) choose the backend, precision, batching
    and instances. ``repo`` is written in a staging directory and renamed into place; an existing
    ``repo`` is replaced only when it is empty or an earlier repository written here.
    """
    opts = opts or RepoOptions(**kw)
    opts.check()
    export_dir, repo = Path(export_dir), Path(repo)
    manifest = _manifest(export_dir)
    _check_target(repo)
    sources, sidecars = {}, {}
    for kind in KINDS:
        if opts.backend == "tensorrt":
            sources[kind], sidecars[kind] = _engine_source(export_dir, manifest, kind, opts.precision)
        else:
            sources[kind] = _onnx_source(export_dir, manifest, kind, opts.precision)
    batches = {k: opts.max_batch for k in KINDS}
    if opts.backend == "tensorrt":  # a plan serves batches up to its profile's max N
        batches = {k: max(1, min(opts.max_batch, int(s["profile"]["max"][0]))) for k, s in sidecars.items()}
    info = {"format": MANIFEST_FORMAT, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "backend": opts.backend, "precision": opts.precision, "kind": opts.instance_kind,
            "max_batch": opts.max_batch, "instances": opts.instances, "queue_delay_us": opts.queue_delay_us,
            "source": {"export_dir": str(export_dir), "files": {k: p.name for k, p in sources.items()}},
            "models": [*KINDS, *ENSEMBLES]}
    if sidecars:
        info["engines"] = {k: {f: s.get(f) for f in ("tensorrt_version", "gpu_name", "compute_capability", "profile")}
                           for k, s in sidecars.items()}
    repo.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{repo.name}.staging-", dir=repo.parent))
    try:
        for kind in KINDS:
            version = staging / kind / "1"
            version.mkdir(parents=True)
            (staging / kind / "config.pbtxt").write_text(stage_config(kind, opts, batches[kind]))
            target = {"tensorrt": "model.plan"}.get(opts.backend, "model.onnx")
            shutil.copyfile(sources[kind], version / target)
            if opts.backend == "python":
                shutil.copyfile(PYTHON_MODEL, version / "model.py")
        for name, stage2 in ENSEMBLES.items():
            (staging / name / "1").mkdir(parents=True)
            (staging / name / "config.pbtxt").write_text(ensemble_config(name, stage2, min(batches.values())))
        (staging / "README.md").write_text(_readme(opts, info))
        (staging / MANIFEST).write_text(json.dumps(info, indent=2, allow_nan=False) + "\n")
        _apply_umask(staging)
        _move_into_place(staging, repo)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def _apply_umask(root: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _move_into_place(staging: Path, repo: Path) -> None:
    old = None
    if repo.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{repo.name}.old-", dir=repo.parent))
        repo.rename(old / repo.name)
    staging.rename(repo)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
