"""Triton python-backend model: one EdgeConnect stage (``model.onnx`` beside this file) on ONNX Runtime.

``ec-export triton --backend python`` copies this file to ``REPO/<stage>/1/model.py``. It runs the
stage with ``ec_runtime``'s OrtRunner (numpy + onnxruntime, no torch), so the server's Python
environment needs ``pip install ec-deploy``. Requests that the dynamic batcher hands over together
and that share a shape run as one ONNX Runtime call; a malformed request gets an error response
of its own and does not fail the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def _channels(config: dict, field: str) -> dict[str, int]:
    return {t["name"]: int(t["dims"][0]) for t in config[field]}


class TritonPythonModel:
    """The Triton python backend's model interface: initialize, execute, finalize."""

    def initialize(self, args: dict) -> None:
        try:
            from ec_runtime.runners import OrtRunner
        except ImportError as exc:
            raise RuntimeError(f"ec_runtime is not importable in the python backend's environment ({exc}); "
                               "install it there with `pip install ec-deploy`") from None
        config = json.loads(args["model_config"])
        self.inputs = _channels(config, "input")
        self.outputs = list(_channels(config, "output"))
        params = config.get("parameters", {})
        threads = int(params.get("intra_op_threads", {}).get("string_value", "0") or 0)
        gpu = args.get("model_instance_kind") == "GPU"
        path = Path(__file__).resolve().parent / "model.onnx"
        self.runner = OrtRunner(path, providers=["cuda"] if gpu else None, threads=threads or None,
                                device=int(args.get("model_instance_device_id", 0) or 0))
        self.runner.activate()

    def _feed(self, request) -> dict[str, np.ndarray]:
        """The request's inputs, checked: float32, rank 4, declared channels, one N, H and W."""
        feed = {}
        for name, channels in self.inputs.items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            arr = tensor.as_numpy()
            if arr.dtype != np.float32 or arr.ndim != 4 or arr.shape[1] != channels:
                raise ValueError(f"input {name!r} must be float32 [N, {channels}, H, W], got {arr.dtype} {list(arr.shape)}")
            feed[name] = arr
        shapes = {(a.shape[0], *a.shape[2:]) for a in feed.values()}
        if len(shapes) != 1:
            raise ValueError(f"inputs disagree on N, H, W: { {n: list(a.shape) for n, a in feed.items()} }")
        n, h, w = shapes.pop()
        if h % 4 or w % 4 or h < 4 or w < 4:
            raise ValueError(f"H and W must be positive multiples of 4 (the client pads), got {h}x{w}")
        return feed

    def _response(self, request, outputs: dict[str, np.ndarray]):
        # only the outputs asked for travel back to the server
        wanted = set(request.requested_output_names()) or set(self.outputs)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(outputs[n]))
                                                          for n in self.outputs if n in wanted])

    def execute(self, requests):
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, dict]]] = {}
        for i, request in enumerate(requests):
            try:
                feed = self._feed(request)
            except ValueError as exc:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
                continue
            key = next(iter(feed.values())).shape[2:]
            groups.setdefault(key, []).append((i, feed))
        for members in groups.values():
            try:
                merged = {n: np.concatenate([f[n] for _, f in members]) for n in self.inputs}
                out = self.runner.infer(merged)
            except Exception as exc:  # ONNX Runtime's own errors: answer every member with it
                for i, _ in members:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"inference failed: {exc}"))
                continue
            start = 0
            for i, feed in members:
                n = next(iter(feed.values())).shape[0]
                responses[i] = self._response(requests[i], {k: v[start:start + n] for k, v in out.items()})
                start += n
        return responses

    def finalize(self) -> None:
        self.runner.deactivate()
