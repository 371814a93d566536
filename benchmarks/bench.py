"""The ``ec-bench`` measurement: every backend and precision against the eager-torch baseline.

For each (size, batch) group all cases are built in one process and timed interleaved
(:func:`benchmarks.stats.time_interleaved`), so speed-ups are ratios taken under the same
conditions. The ``torch`` baseline is the official way of running EdgeConnect: skimage Canny on
the host, eager fp32 generators, the same compositing (:class:`ec_train.inference.ReferencePipeline`).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.ceiling import load_ceiling
from benchmarks.flops import pipeline_flops
from benchmarks.stats import latency_stats, time_interleaved

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class BenchConfig:
    export_dir: Path
    backends: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
    precisions: tuple[str, ...] = PRECISIONS
    sizes: tuple[int, ...] = (256, 512)
    batches: tuple[int, ...] = (1, 4)
    warmup: int = 1
    iters: int = 6
    threads: int | None = None
    cuda_graph: bool = False  # TensorRT rows capture and replay a CUDA graph per shape
    more_exports: tuple[Path, ...] = ()  # further models, timed interleaved with export_dir's
    seed: int = 0
    ceiling_gflops: float | None = field(default_factory=load_ceiling)


class RssSampler:
    """Samples this process's RSS every few ms and keeps the peak per named case."""

    def __init__(self, interval: float = 0.005):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.case: str | None = None
        self.peaks: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self, case: str) -> None:
        """Record the RSS now (also called at the end of every call, so short calls are not missed)."""
        self.peaks[case] = max(self.peaks[case], self._proc.memory_info().rss)

    def _run(self):
        while not self._stop.is_set():
            case = self.case
            if case is not None:
                self.sample(case)
            time.sleep(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bench_inputs(size: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real photos (cycled through the bundled set) with 10-50% free-form holes."""
    from ec_train.masks import free_form_mask
    from ec_train.samples import SAMPLE_PHOTOS, sample_photo

    rng = np.random.default_rng(seed)
    images = np.stack([sample_photo(SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)], size) for i in range(batch)])
    masks = np.stack([free_form_mask(size, size, rng, (0.1, 0.5)) for _ in range(batch)])
    return images, masks


def load_torch_pair(export_info: dict):
    """The eager generators of an export's source checkpoint(s), or raise with the reason."""
    from ec_export.sources import load_generator_pair

    from benchmarks.exports import baseline_problem

    problem = baseline_problem(export_info)
    if problem:
        raise FileNotFoundError(problem)
    edge, inpaint, _ = load_generator_pair([c["path"] for c in export_info["source"]["checkpoints"]])
    return edge, inpaint


def model_label(export_info: dict, export_dir: Path) -> str:
    """``lite`` / ``paper`` for the registry's sizes (the paper's is ``edgeconnect``), else the folder name."""
    from ec_train.registry import VARIANTS

    arch = export_info["source"]["architecture"]
    for name, v in VARIANTS.items():
        if (v.base_channels, v.residual_blocks) == (arch["base_channels"], arch["residual_blocks"]):
            return "paper" if name == "edgeconnect" else name
    return Path(export_dir).name


def _build_cases(cfg: BenchConfig, export_info: dict, images, masks, stage_times, skipped, export_dir=None):
    cases: dict[tuple[str, str], Callable[[], np.ndarray]] = {}
    closers = []
    variants = stage_times.setdefault("variants", {}) if isinstance(stage_times, dict) else {}
    if "torch" in cfg.backends:
        try:
            from ec_train.inference import ReferencePipeline

            edge, inpaint = load_torch_pair(export_info)
            ref = ReferencePipeline(edge, inpaint, canny="skimage", sigma=export_info["settings"]["canny"]["sigma"])
            if cfg.threads:
                import torch

                torch.set_num_threads(cfg.threads)
            rec = stage_times[("torch", "fp32")]
            cases[("torch", "fp32")] = lambda rec=rec: ref.run_batch(images, masks, timer=lambda s, t: rec[s].append(t))
        except Exception as exc:  # reported as a skipped row, with the reason
            skipped.append({"backend": "torch", "precision": "fp32", "reason": str(exc)})
    available = export_info.get("models", {}).get("edge", {})
    for backend in ("onnxruntime", "tensorrt"):
        if backend not in cfg.backends:
            continue
        for precision in cfg.precisions:
            if precision not in available:
                skipped.append({"backend": backend, "precision": precision,
                                "reason": f"the export has no {precision} models (re-export with --{precision})"})
                continue
            try:
                from ec_runtime.pipeline import Inpainter

                graph = {"cuda_graph": cfg.cuda_graph} if backend == "tensorrt" else {}
                inp = Inpainter.from_dir(export_dir or cfg.export_dir, backend=backend, precision=precision,
                                         threads=cfg.threads, strategy="original", **graph)
            except Exception as exc:
                skipped.append({"backend": backend, "precision": precision, "reason": str(exc).splitlines()[0]})
                continue
            closers.append(inp.close)
            rec = stage_times[(backend, precision)]
            # ONNX Runtime times each session (and, on CUDA, the copies); TensorRT times H2D, each
            # engine and D2H with CUDA events, as trtexec reports them
            inp.stages.timer = lambda s, t, rec=rec: rec[s].append(t)
            cases[(backend, precision)] = (lambda inp=inp: np.stack(inp.inpaint_batch(list(images), list(masks))))
            variants[(backend, precision)] = inp.model_variant
    return cases, closers


def run_group(cfg: BenchConfig, export_info: dict, size: int, batch: int,
              on_step: Callable[[], None] | None = None,
              models: list[tuple[str | None, Path, dict]] | None = None) -> tuple[list[dict], list[dict]]:
    """Benchmark every available case at one size and batch; returns (rows, skipped).

    ``models`` (``(label, export_dir, export_info)``) times several models interleaved in one
    loop; each model's rows carry its ``model`` label and compare with its own torch baseline.
    """
    images, masks = bench_inputs(size, batch, cfg.seed)
    models = models or [(None, cfg.export_dir, export_info)]
    per_model: dict = {}
    cases: dict[tuple, Callable[[], np.ndarray]] = {}
    closers: list = []
    skipped: list[dict] = []
    for label, export_dir, info in models:
        stage_times: dict = defaultdict(lambda: defaultdict(list))
        stage_times["variants"] = {}
        found: list[dict] = []
        model_cases, model_closers = _build_cases(cfg, info, images, masks, stage_times, found, export_dir)
        variants = stage_times.pop("variants")
        per_model[label] = (info, stage_times, variants)
        closers += model_closers
        cases.update({(label, *key): fn for key, fn in model_cases.items()})
        skipped += [{**s, **({"model": label} if label else {})} for s in found]
    if not cases:
        for close in closers:
            close()
        return [], skipped
    try:
        outputs = {key: fn() for key, fn in cases.items()}  # accuracy pass (also a warm-up)
        for _, stage_times, _ in per_model.values():
            for times in stage_times.values():
                times.clear()
        with RssSampler() as rss:
            def timed(key, fn):
                def run():
                    rss.case = key
                    fn()
                    rss.case = None
                    rss.sample(key)
                return run
            times = time_interleaved({k: timed(k, fn) for k, fn in cases.items()},
                                     max(0, cfg.warmup - 1), cfg.iters, on_step)
    finally:
        for close in closers:
            close()
    rows = []
    for key, seconds in times.items():
        label, backend, precision = key
        info, stage_times, variants = per_model[label]
        arch = info["source"]["architecture"]
        gflop = pipeline_flops(arch["base_channels"], arch["residual_blocks"], size, size) / 1e9
        baseline = outputs.get((label, "torch", "fp32"))
        base_mean = float(np.mean(times[(label, "torch", "fp32")])) if (label, "torch", "fp32") in times else None
        lat = latency_stats(seconds)
        calls = len(seconds)
        n_warm = len(stage_times[(backend, precision)].get("edge", [])) - calls
        stages = {s: 1e3 * float(np.mean(v[n_warm:] if n_warm > 0 else v))
                  for s, v in stage_times[(backend, precision)].items()}
        if "host_pre" not in stages:  # runtime rows: model stages are timed; the rest is host work
            stages["host"] = max(0.0, lat["mean_ms"] - sum(stages.values()))
        mean_s = lat["mean_ms"] / 1e3
        achieved = gflop * batch / mean_s
        row = {
            **({"model": label} if label else {}),
            "backend": backend, "precision": precision, "size": size, "batch": batch, "latency": lat,
            "throughput_img_s": batch / mean_s, "stages_ms": stages,
            "peak_rss_mb": rss.peaks.get(key, 0) / 2**20, "peak_gpu_mb": None,
            "psnr_db": None, "max_abs_diff": None,
            "speedup_vs_torch": (base_mean / mean_s) if base_mean else None,
            "gflop_per_image": gflop, "achieved_gflops": achieved,
            "efficiency": (achieved / cfg.ceiling_gflops) if cfg.ceiling_gflops else None,
        }
        if variants.get((backend, precision), precision) != precision:
            row["files"] = variants[(backend, precision)]  # e.g. int8_cpu: the U8S8 files for ORT's CPU provider
        if baseline is not None:
            diff = np.abs(outputs[key].astype(np.float64) - baseline.astype(np.float64)) / 255.0
            mse = float(np.mean(diff ** 2))
            # an exact match has no finite PSNR: null in the JSON, "exact" in the Markdown
            row["psnr_db"] = None if mse == 0 else float(10 * np.log10(1.0 / mse))
            row["max_abs_diff"] = float(diff.max())
        rows.append(row)
    order = [m[0] for m in models]
    rows.sort(key=lambda r: (order.index(r.get("model")), BACKENDS.index(r["backend"]), PRECISIONS.index(r["precision"])))
    return rows, skipped


def _model_entry(export_dir: Path, info: dict, label: str | None) -> dict:
    arch = info["source"]["architecture"]
    return {**({"label": label} if label else {}), "export_dir": str(export_dir), "architecture": arch,
            "description": f"{label or arch.get('variant', 'custom')} generators ({arch['residual_blocks']} residual "
                           f"blocks, {arch['base_channels']} base channels), Canny sigma {info['settings']['canny']['sigma']}",
            "source": info.get("source", {}).get("checkpoints", [])}


def run_bench(cfg: BenchConfig, progress: bool = True) -> dict:
    """All groups of ``cfg``; returns the JSON-ready result (without environment and command).

    With ``cfg.more_exports`` every model is timed in the same interleaved loop; rows carry a
    ``model`` label and the result lists each model under ``models``.
    """
    from tqdm.auto import tqdm

    from benchmarks.exports import open_export

    dirs = [Path(cfg.export_dir), *map(Path, cfg.more_exports)]
    infos = [open_export(d) if i == 0 else open_export(d, cfg.precisions, required=False) for i, d in enumerate(dirs)]
    labels: list[str | None] = [None]
    if len(dirs) > 1:
        labels = [model_label(info, d) for d, info in zip(dirs, infos)]
        labels = [lab if labels.count(lab) == 1 else f"{lab} ({i + 1})" for i, lab in enumerate(labels)]
    models = list(zip(labels, dirs, infos))
    groups = [(s, b) for s in cfg.sizes for b in cfg.batches]
    rows, skipped = [], []
    with tqdm(total=len(groups) * cfg.iters, desc="ec-bench", unit="round", disable=not progress) as bar:
        for size, batch in groups:
            bar.set_postfix_str(f"{size}² batch {batch}")
            group_rows, group_skipped = run_group(cfg, infos[0], size, batch, on_step=lambda: bar.update(1),
                                                  models=models)
            rows += group_rows
            for s in group_skipped:
                if s not in skipped:
                    skipped.append(s)
    entries = [_model_entry(d, info, label) for label, d, info in models]
    return {
        "model": entries[0],
        **({"models": entries} if len(entries) > 1 else {}),
        "settings": {"backends": list(cfg.backends), "precisions": list(cfg.precisions), "sizes": list(cfg.sizes),
                     "batches": list(cfg.batches), "warmup": cfg.warmup, "iters": cfg.iters, "threads": cfg.threads,
                     "cuda_graph": cfg.cuda_graph},
        "ceiling_gflops_per_s": cfg.ceiling_gflops,
        "rows": rows,
        "skipped": skipped,
    }
