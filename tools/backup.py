"""Back up and restore the local OpenBao's raft storage (`make backup`, `make restore`).

    python -m tools.backup save --data-dir .data [--file backups/jetpero-<UTC time>.snap]
    python -m tools.backup restore --data-dir .data --file SNAPSHOT [--init-file INIT_JSON]

`save` takes a raft snapshot (`bao operator raft snapshot save`, i.e. GET
sys/storage/raft/snapshot) of the running server with its root token; the file is 0600 in a
0700 directory. A snapshot holds every org, project, key and token record, encrypted by the
server's root key, which is sealed by the unseal key: a snapshot is only usable with
data_dir/unseal.key, so back that key up too (elsewhere).

`restore` force-installs a snapshot into the running server (`bao operator raft snapshot
restore -force`, POST sys/storage/raft/snapshot-force): everything written since is lost. The
server must use the unseal key the snapshot was taken under, and declare the same audit devices
(OpenBao keeps their options in storage and will not unseal if its config differs:
"modifications to audit devices are not allowed"); locally, the audit log's path is inside the
data dir, so restore into a data dir at the same path. Restoring into a fresh data dir (another
machine, or after losing .data): copy the unseal key in, `make run` once (it initialises a new, empty
cluster), then restore with `--init-file` set to the old data dir's init.json: the snapshot
brings the old root token back, and that file becomes data_dir/init.json and root-token again.
Restart JetPero afterwards (its caches hold the state before the restore).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tools import openbao

RESTORE_TIMEOUT = 60.0
SEAL_WAIT = 10.0


class BackupError(RuntimeError):
    """The snapshot could not be taken or installed."""


def _server(data_dir: Path) -> tuple[int, str]:
    """Port and root token of the running local server of data_dir."""
    try:
        port = int((data_dir / "port").read_text())
        token = (data_dir / "root-token").read_text().strip()
    except (OSError, ValueError):
        raise BackupError(f"no local OpenBao in {data_dir}: run `make run` first") from None
    if openbao.health(port)[0] != 200:
        raise BackupError(f"the local OpenBao of {data_dir} is not running on port {port}: `make run` starts it")
    return port, token


def _bao(port: int, token: str, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
    env.update(BAO_ADDR=openbao.address(port), BAO_TOKEN=token)
    result = subprocess.run(  # noqa: S603 - the bao binary, fixed arguments
        [openbao.bao_binary(), "operator", "raft", "snapshot", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"`bao operator raft snapshot {args[0]}` failed: {result.stderr.strip()}")


def save(data_dir: Path | str, file: Path | str | None = None) -> Path:
    """Write a raft snapshot of the running server of data_dir; return its path."""
    data_dir = Path(data_dir).resolve()
    port, token = _server(data_dir)
    path = Path(file) if file else Path("backups") / time.strftime("jetpero-%Y%m%dT%H%M%SZ.snap", time.gmtime())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        _bao(port, token, "save", str(tmp))
        if tmp.stat().st_size == 0:
            raise BackupError("the snapshot is empty")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def restore(data_dir: Path | str, file: Path | str, init_file: Path | str | None = None) -> None:
    """Force-install a snapshot into the running server of data_dir and wait until it is active."""
    data_dir = Path(data_dir).resolve()
    if not Path(file).is_file():
        raise BackupError(f"no snapshot at {file}")
    init = None
    if init_file:
        try:
            init = json.loads(Path(init_file).read_text())
            init["root_token"]  # noqa: B018 - it must have one
        except (OSError, ValueError, KeyError, TypeError):
            raise BackupError(f"{init_file} is not a `bao operator init` output (init.json)") from None
    port, token = _server(data_dir)
    _bao(port, token, "restore", "-force", str(file))
    # The server seals itself to load the snapshot's keyring, then unseals with the static key:
    # wait for the seal (a moment after the call returns), then for it to be active again.
    sealing = time.monotonic() + SEAL_WAIT
    while openbao.health(port)[0] == 200 and time.monotonic() < sealing:
        time.sleep(0.05)
    deadline = time.monotonic() + RESTORE_TIMEOUT
    while openbao.health(port)[0] != 200:
        if time.monotonic() > deadline:
            raise BackupError(
                f"OpenBao is not active {RESTORE_TIMEOUT:.0f}s after the restore. The server must use the "
                f"unseal key the snapshot was taken under ({data_dir / 'unseal.key'}) and declare the same "
                f"audit devices (the same data dir path locally); see {data_dir / 'bao.log'}"
            )
        time.sleep(0.2)
    if init is not None:
        openbao.write_private(data_dir / "init.json", json.dumps(init, indent=2).encode() + b"\n")
        openbao.write_private(data_dir / "root-token", init["root_token"].encode() + b"\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.backup", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    save_p = sub.add_parser("save", help="take a raft snapshot of the local OpenBao")
    save_p.add_argument("--data-dir", default=".data", type=Path)
    save_p.add_argument("--file", type=Path, help="where to write it (default backups/jetpero-<UTC time>.snap)")
    restore_p = sub.add_parser("restore", help="force-restore a raft snapshot into the local OpenBao")
    restore_p.add_argument("--data-dir", default=".data", type=Path)
    restore_p.add_argument("--file", required=True, type=Path)
    restore_p.add_argument("--init-file", type=Path, help="the init.json of the data dir the snapshot came from")
    args = parser.parse_args(argv)
    try:
        if args.command == "save":
            print(f"snapshot written to {save(args.data_dir, args.file)}", file=sys.stderr)
        else:
            restore(args.data_dir, args.file, args.init_file)
            print(f"restored {args.file} into {args.data_dir}; restart JetPero", file=sys.stderr)
    except BackupError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
