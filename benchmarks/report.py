"""Writing an ``ec-bench`` result as JSON (for machines), Markdown (for people) and a PNG chart."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.environment import environment_markdown

ROW_FIELDS = ("backend", "precision", "size", "batch", "latency", "throughput_img_s", "stages_ms",
              "peak_rss_mb", "peak_gpu_mb", "psnr_db", "max_abs_diff", "speedup_vs_torch",
              "gflop_per_image", "achieved_gflops", "efficiency")


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


def write_json(result: dict, path: str | Path) -> Path:
    """Strict JSON (an infinite PSNR, i.e. identical outputs, is written as ``null``), atomically."""
    from ec_train.files import strict_json, write_atomic

    return write_atomic(path, strict_json(result, indent=2) + "\n", "--json")


def _psnr_cell(row: dict) -> str:
    """The PSNR column: "exact" for a bit-identical result (its PSNR is null in the JSON)."""
    if row.get("psnr_db") is None and row.get("max_abs_diff") == 0:
        return "exact"
    return _fmt(row.get("psnr_db"))


FILE_VARIANTS = {"int8_cpu": "int8 U8S8"}  # the runtime's int8 files for ONNX Runtime's CPU provider


def _host_ms(stages: dict):
    """Host work per call: pre + post for the torch baseline, the untimed rest for runtime rows."""
    if "host_pre" in stages:
        return stages["host_pre"] + stages.get("host_post", 0.0)
    return stages.get("host")


def markdown_table(rows: list[dict]) -> str:
    """The headline table: one line per (model,) backend/precision/size/batch."""
    with_model = any("model" in r for r in rows)
    head = ("| model " if with_model else "") + (
        "| backend | precision | size | batch | mean ms | p50 | p90 | p99 | min | img/s | speed-up vs torch "
        "| H2D ms | canny ms | edge ms | inpaint ms | D2H ms | host ms | PSNR dB | peak RSS MB | efficiency |")
    lines = [head, "|---" * head.count("| ") + "|"]
    for r in rows:
        lat, st = r["latency"], r["stages_ms"]
        lines.append("| " + " | ".join(([r.get("model", "-")] if with_model else []) + [
            r["backend"], FILE_VARIANTS.get(r.get("files"), r["precision"]), f"{r['size']}²", str(r["batch"]),
            _fmt(lat["mean_ms"]), _fmt(lat["p50_ms"]), _fmt(lat["p90_ms"]), _fmt(lat["p99_ms"]), _fmt(lat["min_ms"]),
            _fmt(r["throughput_img_s"], 2), _fmt(r["speedup_vs_torch"], 2) + "×",
            _fmt(st.get("h2d")), _fmt(st.get("canny")), _fmt(st.get("edge")), _fmt(st.get("inpaint")),
            _fmt(st.get("d2h")), _fmt(_host_ms(st)),
            _psnr_cell(r), _fmt(r["peak_rss_mb"], 0),
            (_fmt(100 * r["efficiency"], 0) + "%") if r["efficiency"] is not None else "-",
        ]) + " |")
    return "\n".join(lines)


def write_markdown(result: dict, path: str | Path) -> Path:
    path = Path(path)
    parts = [
        "# ec-bench report", "",
        environment_markdown(result["environment"]),
        *[f"- model: {m['description']}" for m in result.get("models", [result["model"]])],
        f"- command: `{result['command']}`",
        f"- ceiling: {_fmt(result.get('ceiling_gflops_per_s'))} GFLOP/s (one large fp32 conv, `python -m benchmarks.ceiling`)",
        "", "Latency is per call (one batch), end to end, from uint8 images in to uint8 images out. Speed-ups "
        "are against the `torch` baseline (skimage Canny on the host, eager fp32 generators) measured "
        "in the same run, interleaved. PSNR is of the final image against that baseline. Stage columns: "
        "H2D / D2H are the host-device copies (GPU rows: CUDA events for TensorRT, synchronous ONNX Runtime "
        "calls for CUDA), the model columns the time in each model; the rest of a call is host work.", "",
        markdown_table(result["rows"]), "",
    ]
    if result.get("skipped"):
        parts += ["Skipped:", ""] + [f"- {s.get('model', '') + ' ' if s.get('model') else ''}{s['backend']} "
                                     f"{s['precision']}: {s['reason']}" for s in result["skipped"]] + [""]
    from ec_train.files import write_atomic

    return write_atomic(path, "\n".join(parts), "--markdown")


def write_plot(result: dict, path: str | Path) -> Path | None:
    """A grouped bar chart of mean latency by backend/precision per size and batch; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = result["rows"]
    groups = sorted({(r["size"], r["batch"]) for r in rows})

    def name(r):
        case = f"{r['backend']} {FILE_VARIANTS.get(r.get('files'), r['precision'])}"
        return f"{r['model']}: {case}" if "model" in r else case

    labels = sorted({name(r) for r in rows}, key=lambda s: (s.split(": ")[0] if ": " in s else "",
                                                            "torch" not in s, s))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 2), 4))
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        values = []
        for size, batch in groups:
            match = [r for r in rows if (r["size"], r["batch"]) == (size, batch) and name(r) == label]
            values.append(match[0]["latency"]["mean_ms"] / batch if match else 0)
        ax.bar([g + i * width for g in range(len(groups))], values, width, label=label)
    ax.set_xticks([g + width * (len(labels) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels([f"{s}², batch {b}" for s, b in groups])
    ax.set_ylabel("mean latency per image (ms)")
    ax.set_title("ec-bench: latency by backend and precision")
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    from ec_train.files import write_atomic

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    return write_atomic(path, png.getvalue(), "--plot")
