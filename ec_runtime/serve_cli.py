"""``ec-serve``: run Triton Inference Server on a model repository written by ``ec-export triton``."""

from __future__ import annotations

import os
import signal
import sys
import time

import click

HELP = """Serve REPO (written by `ec-export triton`) with a real Triton Inference Server.

\b
Starts tritonserver, waits until /v2/health/ready answers, prints the HTTP, gRPC and metrics
endpoints and runs until Ctrl-C or SIGTERM, then stops it cleanly (in-flight requests finish).

\b
The binary: --tritonserver PATH, else `tritonserver` on PATH (NGC container), else the CPU-capable
build bundled in nvidia-pytriton (`pip install ec-deploy[serve]` in a venv of its own, as
`bash scripts/setup_triton_venv.sh` does; then run `.venv-triton/bin/ec-serve`).

\b
It listens on 127.0.0.1 unless --host says otherwise. Any other address needs --api-key: the
admin APIs (model-repository, shared-memory, statistics, trace, logging) then answer only
requests carrying the header `ec-api-key: KEY`; health, metadata and inference stay open.

\b
  ec-export triton export -o repo --backend python
  ec-serve repo
  ec-inpaint photo.jpg --mask hole.png -o out.png --server http://127.0.0.1:8000
"""


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("repo", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address of all three endpoints; e.g. 0.0.0.0 opens them to the network (needs --api-key)")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=8002, show_default=True,
              help="Prometheus metrics at http://HOST:PORT/metrics")
@click.option("--api-key", envvar="EC_SERVE_API_KEY", default=None,
              help="key the restricted admin APIs require [env: EC_SERVE_API_KEY]")
@click.option("--tritonserver", "binary", type=click.Path(dir_okay=False), default=None,
              help="the tritonserver executable [default: PATH, then nvidia-pytriton's build]")
@click.option("--ready-timeout", type=click.FloatRange(min=1), default=180, show_default=True,
              help="seconds to wait for readiness")
@click.option("--exit-timeout", type=click.IntRange(min=0), default=10, show_default=True,
              help="seconds in-flight requests get to finish on stop")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help="write the server's log here [default: a temporary file, shown on failure]")
@click.option("-v", "--verbose", is_flag=True, help="show the server's log on the terminal")
def main(repo, host, http_port, grpc_port, metrics_port, api_key, binary, ready_timeout, exit_timeout, log_file,
         verbose):
    from ec_runtime.errors import EcRuntimeError
    from ec_runtime.serve import ADMIN_APIS, API_KEY_HEADER, TritonServer, find_tritonserver

    if log_file and os.path.exists(log_file):
        raise click.ClickException(f"--log-file {log_file} exists; choose a new file (it is never overwritten)")
    stopping = {"signal": None}

    def on_signal(signum, _frame):
        stopping["signal"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    server = None
    try:
        server = TritonServer(repo, host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                              api_key=api_key, log_file=log_file, verbose=verbose, exit_timeout=exit_timeout)
        server.binary = find_tritonserver(binary)
        click.echo(f"starting {server.binary.path} ({server.binary.source}) on {repo} ...", err=True)
        server.start(ready_timeout)
        ep = server.endpoints
        click.echo(f"ready: HTTP {ep['http']}  gRPC {ep['grpc']}  metrics {ep['metrics']}")
        if api_key:
            click.echo(f"admin APIs ({', '.join(ADMIN_APIS)}) need the header `{API_KEY_HEADER}: <key>`")
        click.echo("Ctrl-C or SIGTERM stops it.", err=True)
        sys.stdout.flush()
        while server.process.poll() is None:
            time.sleep(0.5)
        code = server.process.returncode
        server.stop()
        raise click.ClickException(f"tritonserver exited on its own with code {code}")
    except KeyboardInterrupt:
        if server is not None:
            click.echo("stopping tritonserver ...", err=True)
            code = server.stop()
            click.echo(f"stopped (exit code {code})", err=True)
    except EcRuntimeError as exc:
        if server is not None:
            server.stop()
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()
