"""Against a real Triton server (ec-serve on loopback): bit-exact results, batching, errors, restarts."""

from __future__ import annotations

import re
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ec_runtime import Inpainter, ServerError
from tests.serving.server import API_KEY, Served

SIZES = [(64, 64), (61, 77), (97, 130)]


def _photo(rng, h, w):
    """A smooth image with some structure (so Canny finds edges) and a hole of two blocks."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 7.0 + c) + np.cos(yy / 5.0 - c) for c in range(3)], -1)
    image = np.clip((base + 2) * 60 + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4:h // 2, w // 5:w // 2] = True
    mask[2 * h // 3:h - 3, w // 2:w - 5] = True
    return image, mask


@pytest.fixture(scope="module", params=["http", "grpc"])
def remote(request, server):
    url = server.http if request.param == "http" else server.grpc
    with Inpainter.from_server(url) as painter:
        yield painter


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_server_equals_in_process_bit_for_bit(remote, local, size):
    image, mask = _photo(np.random.default_rng(size[0]), *size)
    got, got_edges = remote.inpaint(image, mask, return_edges=True)
    want, want_edges = local.inpaint(image, mask, return_edges=True)
    assert np.array_equal(got, want) and np.array_equal(got_edges, want_edges)
    assert np.array_equal(remote.inpaint(image, mask), want)  # the lean request (no edges asked for)


def test_crop_strategy_and_official_merge_match(remote, local):
    image, mask = _photo(np.random.default_rng(7), 300, 260)
    for kw in ({"strategy": "crop"}, {"strategy": "resize"}):
        remote.max_side = local.max_side = 128
        try:
            assert np.array_equal(remote.inpaint(image, mask, **kw), local.inpaint(image, mask, **kw))
        finally:
            remote.max_side = local.max_side = 512
    remote.edge_merge = local.edge_merge = "official"
    try:
        small, small_mask = _photo(np.random.default_rng(8), 64, 80)
        assert np.array_equal(remote.inpaint(small, small_mask), local.inpaint(small, small_mask))
    finally:
        remote.edge_merge = local.edge_merge = "training"


def test_batches_larger_than_max_batch_are_split(remote, local):
    rng = np.random.default_rng(3)
    pairs = [_photo(rng, 48, 52) for _ in range(11)]  # max_batch 8: two requests
    got = remote.inpaint_batch([p[0] for p in pairs], [p[1] for p in pairs], strategy="original")
    want = local.inpaint_batch([p[0] for p in pairs], [p[1] for p in pairs], strategy="original")
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def _metrics(server) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(server.metrics, timeout=10).read().decode()
    found = {}
    for name, model, value in re.findall(r'^(nv_inference_(?:exec_)?count)\{model="(\w+)",version="1"\} (\S+)$',
                                         text, re.M):
        found[(name, model)] = float(value)
    return found


def test_200_requests_at_concurrency_8_are_batched_without_errors(server, local):
    image, mask = _photo(np.random.default_rng(11), 64, 64)
    want = local.inpaint(image, mask)
    before = _metrics(server)
    with Inpainter.from_server(server.grpc) as painter:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: painter.inpaint(image, mask), range(200)))
    assert all(np.array_equal(r, want) for r in results)  # zero errors, and every answer exact
    deadline = time.monotonic() + 10  # Triton updates its counters just after answering
    while True:
        after = _metrics(server)
        done = all(after[("nv_inference_count", m)] - before.get(("nv_inference_count", m), 0) >= 200
                   for m in ("canny", "edge", "inpaint"))
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for model in ("canny", "edge", "inpaint"):
        count = after[("nv_inference_count", model)] - before.get(("nv_inference_count", model), 0)
        execs = after[("nv_inference_exec_count", model)] - before.get(("nv_inference_exec_count", model), 0)
        assert count == 200 and execs < count, (model, count, execs)  # dynamic batching merged requests


def _raw_infer(server, inputs):
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http.removeprefix("http://"))
    tensors = []
    for name, arr in inputs.items():
        t = http.InferInput(name, list(arr.shape), {np.float32: "FP32", np.float64: "FP64",
                                                     np.int32: "INT32"}[arr.dtype.type])
        t.set_data_from_numpy(arr)
        tensors.append(t)
    try:
        return client.infer("edgeconnect", tensors)
    finally:
        client.close()


def _good(h=32, w=32):
    rng = np.random.default_rng(0)
    return {"image": rng.random((1, 3, h, w), dtype=np.float32), "gray": rng.random((1, 1, h, w), dtype=np.float32),
            "mask": (rng.random((1, 1, h, w)) > 0.7).astype(np.float32)}


@pytest.mark.parametrize("case", ["wrong dtype", "wrong rank", "missing input", "mismatched sizes",
                                  "not a multiple of 4", "wrong channels"])
def test_malformed_requests_get_an_error_and_the_server_stays_ready(server, case):
    from tritonclient.utils import InferenceServerException

    feed = _good()
    if case == "wrong dtype":
        feed["image"] = feed["image"].astype(np.float64)
    elif case == "wrong rank":
        feed["gray"] = feed["gray"][0]
    elif case == "missing input":
        del feed["mask"]
    elif case == "mismatched sizes":
        feed["mask"] = _good(36, 32)["mask"]
    elif case == "not a multiple of 4":
        feed = _good(30, 30)
    else:
        feed["image"] = np.concatenate([feed["image"], feed["gray"]], 1)
    with pytest.raises(InferenceServerException):
        _raw_infer(server, feed)
    assert _raw_infer(server, _good()).as_numpy("image_out").shape == (1, 3, 32, 32)
    assert urllib.request.urlopen(f"{server.http}/v2/health/ready", timeout=5).status == 200


def test_admin_apis_need_the_key_while_inference_stays_open(server):
    url = f"{server.http}/v2/repository/index"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=5)
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"ec-api-key": API_KEY})
    names = {m["name"] for m in __import__("json").loads(urllib.request.urlopen(request, timeout=5).read())}
    assert {"canny", "edge", "inpaint", "edgeconnect", "edgeconnect_official"} <= names


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_timeout_is_a_clean_error_naming_the_url(server, protocol):
    url = server.http if protocol == "http" else server.grpc
    image, mask = _photo(np.random.default_rng(5), 512, 512)
    with Inpainter.from_server(url, strategy="original") as painter:  # connects with the default timeout
        painter.stages.timeout = 0.01
        painter.stages.close()  # new connections take the new timeout
        with pytest.raises(ServerError, match=f"{re.escape(url)} did not answer"):
            painter.inpaint(image, mask)


def test_restart_gives_a_clean_error_then_works(python_repo, local):
    served = Served(python_repo, api_key=None).start()
    image, mask = _photo(np.random.default_rng(9), 40, 44)
    want = local.inpaint(image, mask)
    try:
        painters = [Inpainter.from_server(served.http), Inpainter.from_server(served.grpc)]
        assert all(np.array_equal(p.inpaint(image, mask), want) for p in painters)
        assert served.stop(signal.SIGINT) == 0  # Ctrl-C stops it cleanly
        for painter, url in zip(painters, (served.http, served.grpc)):
            with pytest.raises(ServerError, match=f"{re.escape(url)} is not reachable"):
                painter.inpaint(image, mask)
        served.start()  # the same ports again
        assert all(np.array_equal(p.inpaint(image, mask), want) for p in painters)
    finally:
        served.stop()


def test_unreachable_and_unknown_model_errors_name_the_url(server):
    with pytest.raises(ServerError, match=r"http://127\.0\.0\.1:9 is not reachable.*ec-serve"):
        Inpainter.from_server("http://127.0.0.1:9")
    with pytest.raises(ServerError, match=r"grpc://127\.0\.0\.1:9 is not reachable"):
        Inpainter.from_server("127.0.0.1:9", protocol="grpc")
    with pytest.raises(ServerError, match="no ready model 'nope'"):
        Inpainter.from_server(server.http, model="nope")
