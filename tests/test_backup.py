"""`make backup` / `make restore`: a raft snapshot restored into a fresh OpenBao brings everything back."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path

import hvac
import pytest

from app import create_app
from app.vault.bootstrap import bootstrap
from tests.checks import CheckedApi, assert_error, free_port_pair
from tests.helpers import FAKE_KEY, Bao, make_config, unique
from tools import backup, openbao, procs


def _app(port: int, root_token: str, proc, approle: str):
    bao = Bao(addr=openbao.address(port), root_token=root_token, process=proc)
    return bao, create_app(make_config(bao, approle))


def test_snapshot_restored_into_a_fresh_server(tmp_path, upstream):
    data_dir, approle = tmp_path / "data", str(tmp_path / "approle.json")
    old_dir = tmp_path / "old"  # where the lost data dir's files end up (the operator's offline copies)
    port = free_port_pair()
    proc, root_token = openbao.start_persistent(data_dir, port)
    apps = []
    try:
        bao, app = _app(port, root_token, proc, approle)
        apps.append(app)
        bootstrap(bao.root(), approle)
        result = app.test_cli_runner().invoke(args=["operator-token", "--name", "backup"])
        assert result.exit_code == 0, result.output
        operator = result.output.strip()
        api = CheckedApi(app.test_client(), operator)
        org, later = unique("org"), unique("later")
        project = f"/orgs/{org}/projects/abc.co"
        assert api.post("/orgs", json={"slug": org}).status_code == 201
        assert api.post(f"/orgs/{org}/projects", json={"slug": "abc.co"}).status_code == 201
        r = api.put(
            f"{project}/providers/openai", json={"template": "openai", "api_key": FAKE_KEY, "base_url": upstream.url}
        )
        assert r.status_code == 200, r.json
        r = api.post(f"{project}/tokens", json={"name": "web", "environment": "production", "expires_in": 3600})
        project_token = r.json["token"]

        snapshot = backup.save(data_dir, tmp_path / "backups" / "jetpero.snap")
        assert snapshot.stat().st_size > 0 and snapshot.stat().st_mode & 0o777 == 0o600
        assert snapshot.parent.stat().st_mode & 0o777 == 0o700
        assert FAKE_KEY.encode() not in snapshot.read_bytes()  # the key is in it, encrypted only
        assert api.post("/orgs", json={"slug": later}).status_code == 201  # after the snapshot: lost
        app.extensions["jetpero"].stop()
        procs.stop(proc)

        # The data dir is lost; only the unseal key and init.json were kept. A fresh server (same
        # path, so the same audit device) is started and the snapshot restored into it.
        data_dir.rename(old_dir)
        data_dir.mkdir(mode=0o700)
        shutil.copy2(old_dir / "unseal.key", data_dir / "unseal.key")
        port = free_port_pair()
        proc, fresh_root = openbao.start_persistent(data_dir, port)
        assert fresh_root != root_token
        backup.restore(data_dir, snapshot, init_file=old_dir / "init.json")
        assert (data_dir / "root-token").read_text().strip() == root_token
        assert (data_dir / "root-token").stat().st_mode & 0o777 == 0o600

        bao, app = _app(port, root_token, proc, approle)  # the old root token and app credentials work
        apps.append(app)
        assert bootstrap(bao.root(), approle) == ["wrote policies"]
        api = CheckedApi(app.test_client(), operator)  # the operator token verifies again
        assert [p["slug"] for p in api.get(f"/orgs/{org}/projects").json] == ["abc.co"]
        assert_error(api.get(f"/orgs/{later}"), 404)
        r = app.test_client().post(
            "/proxy/openai/v1/chat/completions",
            json={"model": "m", "messages": []},
            headers={"Authorization": f"Bearer {project_token}"},
        )
        assert r.status_code == 200, r.get_data(as_text=True)
        assert upstream.requests[-1].header("authorization") == f"Bearer {FAKE_KEY}"
    finally:
        for app in apps:
            app.extensions["jetpero"].stop()
        procs.stop(proc)


def test_backup_of_a_stopped_server_names_the_fix(tmp_path, capsys):
    assert backup.main(["save", "--data-dir", str(tmp_path)]) == 1
    assert "run `make run` first" in capsys.readouterr().err
    (tmp_path / "port").write_text(f"{free_port_pair()}\n")
    (tmp_path / "root-token").write_text("x\n")
    with pytest.raises(backup.BackupError, match="not running"):
        backup.save(tmp_path)
    with pytest.raises(backup.BackupError, match="no snapshot"):
        backup.restore(tmp_path, tmp_path / "missing.snap")


def _seal_block(*keys: tuple[str, Path]) -> str:
    (current_id, current), *previous = keys
    lines = [f'  current_key_id = "{current_id}"', f'  current_key = "file://{current}"']
    for key_id, path in previous:
        lines += [f'  previous_key_id = "{key_id}"', f'  previous_key = "file://{path}"']
    return 'seal "static" {\n' + "\n".join(lines) + "\n}"


def _serve(data_dir: Path, port: int, seal: str) -> subprocess.Popen:
    """The persistent server of data_dir, started with another `seal "static"` block."""
    config = openbao.render_config(data_dir, port)
    start = config.index('seal "static"')
    config = config[:start] + seal + config[config.index("}", start) + 1 :]
    (data_dir / "openbao.hcl").write_text(config)
    with open(data_dir / "bao.log", "ab") as log:
        proc = subprocess.Popen(  # noqa: S603
            [openbao.bao_binary(), "server", f"-config={data_dir / 'openbao.hcl'}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while openbao.health(port)[0] != 200 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    return proc


def test_static_unseal_key_rotation_as_documented(tmp_path):
    """README "Backups and key rotation": new key current, old one previous, restart; then the old one can go."""
    data_dir, port = tmp_path / "data", free_port_pair()
    proc, root_token = openbao.start_persistent(data_dir, port)
    procs.stop(proc)
    old, new = data_dir / "unseal.key", data_dir / "unseal-2.key"
    openbao.write_private(new, secrets.token_bytes(32))
    try:
        proc = _serve(data_dir, port, _seal_block(("jetpero-2", new), ("jetpero-1", old)))
        assert openbao.health(port)[0] == 200  # unsealed with the old key, root key rewrapped under the new
        procs.stop(proc)
        old.unlink()  # the old key is gone for good
        proc = _serve(data_dir, port, _seal_block(("jetpero-2", new)))
        assert openbao.health(port)[0] == 200
        assert hvac.Client(url=openbao.address(port), token=root_token).auth.token.lookup_self()["data"]["id"]
    finally:
        procs.stop(proc)
