from tests.helpers import FAKE_KEY, project_path


def test_end_to_end(api, client, project, provider, project_token, upstream):
    r = api.get(f"{project_path(project)}/providers/openai")
    assert r.status_code == 200, r.json
    assert FAKE_KEY not in r.get_data(as_text=True)
    r = client.post(
        "/proxy/openai/v1/chat/completions",
        json={"model": "x", "messages": []},
        headers={"Authorization": f"Bearer {project_token}"},
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    seen = upstream.requests[-1]
    assert seen.header("authorization") == f"Bearer {FAKE_KEY}"
