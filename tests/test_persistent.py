"""Persistent mode: after an OpenBao restart everything is still there and still decrypts."""

from __future__ import annotations

from app.services import provider_keys
from app.vault.bootstrap import bootstrap
from tests.checks import CheckedApi, assert_error, free_port_pair
from tests.helpers import FAKE_KEY, Bao, unique
from tools import openbao, procs


def _app(make_app, port: int, root_token: str, proc, approle: str):
    bao = Bao(addr=openbao.address(port), root_token=root_token, process=proc)
    return bao, make_app(bao=bao, approle_file=approle)


def test_restart_keeps_everything(make_app, tmp_path, upstream):
    data_dir, approle = tmp_path / "bao", str(tmp_path / "approle.json")
    port = free_port_pair()
    proc, root_token = openbao.start_persistent(data_dir, port)
    apps = []
    try:
        bao, app = _app(make_app, port, root_token, proc, approle)
        apps.append(app)
        assert "issued app credentials" in bootstrap(bao.root(), approle)
        result = app.test_cli_runner().invoke(args=["operator-token", "--name", "persistent"])
        assert result.exit_code == 0, result.output
        operator = result.output.strip()
        api = CheckedApi(app.test_client(), operator)
        org = unique("org")
        project = f"/orgs/{org}/projects/abc.co"
        assert api.post("/orgs", json={"slug": org, "display_name": "Kept"}).status_code == 201
        assert api.post(f"/orgs/{org}/projects", json={"slug": "abc.co"}).status_code == 201
        r = api.put(
            f"{project}/providers/openai", json={"template": "openai", "api_key": FAKE_KEY, "base_url": upstream.url}
        )
        assert r.status_code == 200, r.json
        provider_before = r.json
        r = api.post(f"/orgs/{org}/members", json={"name": "dev", "role": "developer"})
        member_token = r.json["token"]
        r = api.post(f"{project}/tokens", json={"name": "web", "environment": "production", "expires_in": 3600})
        project_token = r.json["token"]
        app.extensions["jetpero"].stop()
        procs.stop(proc)

        # Restart on another port; a new app (fresh caches) must find everything in Vault.
        assert openbao.health(port)[0] is None
        port = free_port_pair()
        proc, restarted_root = openbao.start_persistent(data_dir, port)
        assert restarted_root == root_token
        bao, app = _app(make_app, port, root_token, proc, approle)
        apps.append(app)
        done = bootstrap(bao.root(), approle)  # idempotent: nothing re-made, credentials still work
        assert not [step for step in done if step.startswith(("mounted", "created", "issued", "enabled"))], done

        api = CheckedApi(app.test_client(), operator)  # the admin signing key survived
        assert api.get(f"/orgs/{org}").json["display_name"] == "Kept"
        assert [p["slug"] for p in api.get(f"/orgs/{org}/projects").json] == ["abc.co"]
        assert api.get(f"{project}/providers/openai").json == provider_before
        assert api.as_(member_token).get(f"/orgs/{org}/projects").status_code == 200
        assert provider_keys.load_with_key(app.extensions["jetpero"].vault, org, "abc.co", "openai")[1] == FAKE_KEY

        # The project token still verifies and the key still decrypts, end to end.
        r = app.test_client().post(
            "/proxy/openai/v1/chat/completions",
            json={"model": "m", "messages": []},
            headers={"Authorization": f"Bearer {project_token}"},
        )
        assert r.status_code == 200, r.get_data(as_text=True)
        assert upstream.requests[-1].header("authorization") == f"Bearer {FAKE_KEY}"

        # History continues where it was.
        r = api.put(
            f"{project}/providers/openai", json={"template": "openai", "api_key": FAKE_KEY, "base_url": upstream.url}
        )
        assert r.json["version"] == provider_before["version"] + 1
        assert api.delete(f"/orgs/{org}?cascade=true").status_code == 204
        assert_error(api.get(f"/orgs/{org}"), 404)
    finally:
        for app in apps:
            app.extensions["jetpero"].stop()
        procs.stop(proc)
