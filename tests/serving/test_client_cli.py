"""ec-inpaint --server and ec-serve as commands; URL parsing and the server venv's loader setup."""

from __future__ import annotations

import socket
import subprocess

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from ec_runtime.cli import main as inpaint_main
from ec_runtime.errors import InputError
from ec_runtime.remote import parse_url
from ec_runtime.serve_cli import main as serve_main
from tests.serving.server import ROOT, triton_python


def _write_photos(folder, sizes):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f"p{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_ec_inpaint_server_matches_local_with_edges_and_per_file_errors(server, tiny_export3, tmp_path):
    photos = tmp_path / "photos"
    _write_photos(photos, [(61, 77), (64, 64), (90, 130)])
    (photos / "broken.png").write_bytes(b"not an image")
    mask = np.zeros((200, 200), np.uint8)
    mask[20:50, 30:70] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    common = [str(photos), "--mask", str(tmp_path / "mask.png"), "--resize-mask", "--save-edges", "--batch", "2"]
    remote = CliRunner().invoke(inpaint_main, [*common, "-o", str(tmp_path / "remote"), "--server", server.grpc])
    local = CliRunner().invoke(inpaint_main, [*common, "-o", str(tmp_path / "local"), "--model", str(tiny_export3)])
    assert remote.exit_code == 1 and local.exit_code == 1  # the broken file fails, the others are written
    assert "inpainted 3/4" in remote.output and f"Triton at {server.grpc}" in remote.output
    assert "broken.png" in remote.output and "Traceback" not in remote.output
    names = sorted(p.name for p in (tmp_path / "remote").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "local").iterdir()) and len(names) == 6
    for name in names:
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_ec_inpaint_server_errors_are_one_line(tmp_path):
    _write_photos(tmp_path / "photos", [(32, 32)])
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), np.full((32, 32), 255, np.uint8))
    args = [str(tmp_path / "photos"), "--mask", str(mask), "-o", str(tmp_path / "out")]
    down = CliRunner().invoke(inpaint_main, [*args, "--server", "http://127.0.0.1:9"])
    assert down.exit_code == 1 and "http://127.0.0.1:9 is not reachable" in down.output
    assert "Traceback" not in down.output
    mixed = CliRunner().invoke(inpaint_main, [*args, "--server", "http://127.0.0.1:9", "--precision", "fp16"])
    assert mixed.exit_code == 2 and "--precision" in mixed.output
    stray = CliRunner().invoke(inpaint_main, [*args, "--protocol", "grpc"])
    assert stray.exit_code == 2 and "only with --server" in stray.output


@pytest.mark.parametrize("url, protocol, expected", [
    ("http://127.0.0.1:8000", None, ("127.0.0.1:8000", "http", False)),
    ("grpc://10.0.0.5", None, ("10.0.0.5:8001", "grpc", False)),
    ("localhost:9000", "grpc", ("localhost:9000", "grpc", False)),
    ("https://triton.example:443", None, ("triton.example:443", "http", True)),
    ("[::1]:8000", None, ("[::1]:8000", "http", False)),
])
def test_parse_url(url, protocol, expected):
    assert parse_url(url, protocol) == expected


@pytest.mark.parametrize("url", ["", "ftp://host:1", "http://host:1/v2/models", "http://host:99999"])
def test_parse_url_refuses(url):
    with pytest.raises(InputError):
        parse_url(url)


def test_ec_serve_refuses_before_starting_anything(python_repo, tmp_path):
    open_host = CliRunner().invoke(serve_main, [str(python_repo), "--host", "0.0.0.0"], env={"EC_SERVE_API_KEY": ""})
    assert open_host.exit_code == 1 and "--api-key" in open_host.output
    missing = CliRunner().invoke(serve_main, [str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "model repository not found" in missing.output
    same = CliRunner().invoke(serve_main, [str(python_repo), "--http-port", "9100", "--grpc-port", "9100"])
    assert same.exit_code == 1 and "must differ" in same.output


def test_ec_serve_reports_a_busy_port(python_repo):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(triton_python()), "-m", "ec_runtime.serve_cli", str(python_repo),
                                 "--http-port", str(port)], capture_output=True, text=True, timeout=60,
                                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_bundled_server_loads_this_interpreters_libpython():
    code = ("import sysconfig; from ec_runtime.serve import find_tritonserver; b = find_tritonserver(); "
            "print(b.source); print(b.env['LD_LIBRARY_PATH'].split(':')[0] == sysconfig.get_config_var('LIBDIR')); "
            "print(b.stub.parent.name)")
    out = subprocess.run([str(triton_python()), "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout.split()
    import sys

    assert out == ["nvidia-pytriton", "True", f"{sys.version_info[0]}.{sys.version_info[1]}"]


def test_serving_code_imports_without_torch():
    block = ("import sys\nclass B:\n    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in {blocked}:\n            raise ImportError(name)\n"
             "sys.meta_path.insert(0, B())\n")
    runtime = block.format(blocked=("torch", "ec_train", "ec_export")) + \
        "import ec_runtime.remote, ec_runtime.serve, ec_runtime.serve_cli\nprint('ok')"
    export = block.format(blocked=("torch",)) + "import ec_export.triton, ec_export.cli\nprint('ok')"
    for code in (runtime, export):
        proc = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip() == "ok", proc.stderr
