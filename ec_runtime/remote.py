"""The pipeline's stages on a Triton Inference Server (``Inpainter.from_server``).

:class:`TritonStages` sends the padded ``image``, ``gray`` and ``mask`` to the ``edgeconnect``
ensemble of a repository written by ``ec-export triton`` (or ``edgeconnect_official`` for
``edge_merge="official"``) and returns its outputs. Everything else (reading, padding, gray,
strategies, cropping, compositing) stays in :class:`ec_runtime.Inpainter`, exactly as locally,
so results equal in-process ones bit for bit when the server runs the same ONNX files.

Needs ``tritonclient`` (``pip install ec-deploy[client]``), imported lazily. A server that is
down, refuses a request or times out raises :class:`ServerError` naming the URL.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import numpy as np

from ec_runtime.errors import InputError, MissingDependencyError, ServerError

PROTOCOLS = ("http", "grpc")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
OFFICIAL_SUFFIX = "_official"
ALL_OUTPUTS = ("image_out", "edges", "edges_out", "edges_raw")


def parse_url(url: str, protocol: str | None = None) -> tuple[str, str, bool]:
    """``http://host:8000``, ``grpc://host:8001``, ``https://...`` or ``host[:port]`` -> (host:port, protocol, ssl).

    ``protocol`` (``http`` or ``grpc``) wins over the URL's scheme; without either it is HTTP.
    """
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"server URL must be a non-empty string like http://127.0.0.1:8000, got {url!r}")
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"//{text}")
    scheme = parts.scheme.lower()
    if scheme not in ("", "http", "https", "grpc", "grpcs"):
        raise InputError(f"server URL {url!r}: scheme must be http, https, grpc or grpcs")
    if protocol is not None and protocol not in PROTOCOLS:
        raise InputError(f"protocol must be http or grpc, got {protocol!r}")
    chosen = protocol or ("grpc" if scheme.startswith("grpc") else "http")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InputError(f"server URL {url!r}: {exc}") from None
    if not host or parts.path not in ("", "/"):
        raise InputError(f"server URL {url!r} must be HOST:PORT, optionally with a scheme (http://127.0.0.1:8000)")
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port or DEFAULT_PORTS[chosen]}", chosen, scheme in ("https", "grpcs")


def _import_client(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
    except ImportError as exc:
        raise MissingDependencyError(f"the Triton client is not installed ({exc}): "
                                     "`pip install ec-deploy[client]`") from None
    return client


class TritonStages:
    """canny -> edge -> inpaint as one ensemble call on a Triton server.

    One client per thread (tritonclient's HTTP client is not thread-safe), so one instance may
    serve concurrent :meth:`Inpainter.inpaint` calls. ``retries`` repeats a call that failed to
    reach the server (connection refused or reset, server unavailable) after a short pause;
    errors the server answers with are never retried.
    """

    def __init__(self, url: str, model: str = "edgeconnect", protocol: str | None = None, *,
                 timeout: float = 120.0, headers: dict[str, str] | None = None, retries: int = 0,
                 official_model: str | None = None) -> None:
        self.address, self.protocol, self.ssl = parse_url(url, protocol)
        self.url = f"{self.protocol}{'s' if self.ssl else ''}://{self.address}"
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InputError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InputError(f"retries must be an integer >= 0, got {retries!r}")
        self.models = {"edges_out": model, "edges_raw": official_model or model + OFFICIAL_SUFFIX}
        self.timeout, self.headers, self.retries = float(timeout), dict(headers or {}), retries
        self._client_mod = _import_client(self.protocol)
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self.providers = [f"triton {self.url}/{model}"]
        self.max_batch: dict[str, int] = {}
        self._check_ready(model)

    # --- connection ------------------------------------------------------------------------------
    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                client = self._client_mod.InferenceServerClient(self.address, ssl=self.ssl)
            else:
                client = self._client_mod.InferenceServerClient(
                    self.address, ssl=self.ssl, connection_timeout=min(self.timeout, 10.0),
                    network_timeout=self.timeout)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _error(self, what: str, exc: BaseException) -> ServerError:
        text = str(exc).strip() or type(exc).__name__
        if _unreachable(exc):
            return ServerError(f"Triton server {self.url} is not reachable ({what}): {text}. Is it running? "
                               "Start one with `ec-serve REPO`.")
        if _timed_out(exc):
            return ServerError(f"Triton server {self.url} did not answer {what} within {self.timeout:g} s: {text}")
        return ServerError(f"Triton server {self.url} refused {what}: {text}")

    def _call(self, what: str, fn):
        for attempt in range(self.retries + 1):
            try:
                return fn(self._client())
            except Exception as exc:  # tritonclient, gevent, grpc and socket errors alike
                lost = _unreachable(exc)
                if lost or _timed_out(exc):  # dead or busy connections: the next call opens fresh ones
                    self._drop_client()
                if not lost or attempt == self.retries:
                    raise self._error(what, exc) from None
                time.sleep(min(0.5 * 2 ** attempt, 5.0))

    def _drop_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            _close(client)

    def _check_ready(self, model: str) -> None:
        kw = {"headers": self.headers} if self.headers else {}
        if not self._call("a readiness check", lambda c: c.is_server_ready(**kw)):
            raise ServerError(f"Triton server {self.url} is up but not ready yet; wait for /v2/health/ready")
        if not self._call(f"a readiness check of model {model!r}", lambda c: c.is_model_ready(model, **kw)):
            raise ServerError(f"Triton server {self.url} has no ready model {model!r}; serve a repository written "
                              "by `ec-export triton` (it holds `edgeconnect`), or pass model=/--server-model")

    def _max_batch(self, model: str) -> int:
        if model not in self.max_batch:
            kw = {"headers": self.headers} if self.headers else {}
            try:
                config = self._client().get_model_config(model, **kw)
                if self.protocol == "grpc":
                    config = config.config
                    value = int(config.max_batch_size)
                else:
                    value = int(config.get("max_batch_size", 0))
            except Exception:  # the model-config API may be restricted: send one image per request
                value = 1
            self.max_batch[model] = max(1, value)
        return self.max_batch[model]

    # --- the stages interface of Inpainter -------------------------------------------------------
    def __call__(self, image: np.ndarray, gray: np.ndarray, mask: np.ndarray, edges_key: str,
                 want_edges: bool) -> dict[str, np.ndarray]:
        model = self.models[edges_key]
        # Triton's ensemble scheduler deadlocks a request that leaves out an ensemble output which a
        # later step consumes ("at least one output is not set"), so those two are always requested.
        outputs = ALL_OUTPUTS if want_edges else ("image_out", "edges", edges_key)
        step = self._max_batch(model)
        parts = [self._infer(model, image[i:i + step], gray[i:i + step], mask[i:i + step], outputs)
                 for i in range(0, image.shape[0], step)]
        return {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in outputs}

    def _infer(self, model: str, image, gray, mask, outputs) -> dict[str, np.ndarray]:
        mod = self._client_mod
        inputs = []
        for name, arr in (("image", image), ("gray", gray), ("mask", mask)):
            tensor = mod.InferInput(name, list(arr.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            inputs.append(tensor)
        wanted = [mod.InferRequestedOutput(n) for n in outputs]
        kw = {"headers": self.headers} if self.headers else {}
        if self.protocol == "grpc":
            kw["client_timeout"] = self.timeout
        result = self._call(f"an inference request to {model!r}",
                            lambda c: c.infer(model, inputs, outputs=wanted, **kw))
        return {n: result.as_numpy(n) for n in outputs}

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            _close(client)
        self._local = threading.local()


def _close(client) -> None:
    try:
        client.close()
    except Exception:  # closing a broken connection must not raise
        pass


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, EOFError)):
        return True
    text = str(exc)
    return any(s in text for s in ("StatusCode.UNAVAILABLE", "Connection refused", "connection refused",
                                   "Connection reset", "failed to connect", "Socket closed", "Broken pipe"))


def _timed_out(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return isinstance(exc, TimeoutError) or any(s in text for s in ("DEADLINE_EXCEEDED", "timed out", "Timeout"))
