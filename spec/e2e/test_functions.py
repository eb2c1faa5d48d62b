"""The functions API: registration rules, ownership, limits."""
import requests

from test_users import error_shape

ECHO = "faas-test/echo:latest"


def test_registers_lists_gets_and_deletes_a_function(client):
    r = client.post("/api/v1/functions", json={"image": ECHO, "name": "echo-1"})
    assert r.status_code == 201
    assert r.json()["message"] == "Function created successfully."
    fid = r.json()["functionId"]
    lst = client.get("/api/v1/functions/me").json()
    assert [f["functionId"] for f in lst] == [fid]
    assert lst[0]["id"] == fid and lst[0]["image"] == ECHO and lst[0]["name"] == "echo-1"
    g = client.get(f"/api/v1/functions/{fid}")
    assert g.status_code == 200 and g.json()["functionId"] == fid and g.json()["image"] == ECHO
    d = client.delete(f"/api/v1/functions/{fid}")
    assert d.status_code == 200 and d.json()["message"] == "Function deleted successfully."
    error_shape(client.get(f"/api/v1/functions/{fid}"), 404)
    assert client.get("/api/v1/functions/me").json() == []


def test_name_defaults_from_the_image_and_is_unique_per_owner(client, other):
    r = client.post("/api/v1/functions", json={"image": "registry.example.invalid:5000/team/hello:1.0"})
    assert r.status_code == 201
    assert client.get(f"/api/v1/functions/{r.json()['functionId']}").json()["name"] == "hello"
    error_shape(client.post("/api/v1/functions", json={"image": "hello:2.0"}), 409)
    assert other.post("/api/v1/functions", json={"image": "hello:2.0"}).status_code == 201


def test_rejects_invalid_image_references(client):
    for image in ("", "team/UPPER", "a b", "a;rm -rf /", "../../etc/passwd", "a:", "a@sha256:12",
                  "host:99999/a", "$(id)", "a" * 600, 42, None, {"$ne": None}, ["x"]):
        r = client.post("/api/v1/functions", json={"image": image})
        body = error_shape(r, 400)
        assert "image" in body["message"]


def test_validates_limits_and_env(client):
    bad = [{"timeout": 0}, {"timeout": -1}, {"timeout": "10"}, {"timeout": 61},
           {"memory": "lots"}, {"memory": 1024}, {"memory": "2g"}, {"memory": 1.5},
           {"cpus": 0}, {"cpus": 3}, {"cpus": "1"}, {"env": {"1BAD": "x"}},
           {"env": {"OK": 1}}, {"env": ["A=b"]}, {"env": {"A": "x" * 20000}},
           {"network": True}, {"network": "yes"}, {"name": "bad name"}, {"name": ""},
           {"name": 5}, {"unknown": 1}]
    for extra in bad:
        r = client.post("/api/v1/functions", json={"image": ECHO, **extra})
        error_shape(r, 400)
    r = client.post("/api/v1/functions", json={"image": ECHO, "name": "limited", "timeout": 2.5,
                                               "memory": "64m", "cpus": 0.5,
                                               "env": {"GREETING": "hi", "_X1": ""}})
    assert r.status_code == 201, r.text
    f = client.get(f"/api/v1/functions/{r.json()['functionId']}").json()
    assert f["timeout"] == 2.5 and f["memory"] == 64 * 1024 * 1024 and f["cpus"] == 0.5
    assert f["env"] == {"GREETING": "hi", "_X1": ""}


def test_another_users_function_is_404_and_untouched(client, other):
    fid = client.function(ECHO)
    error_shape(other.get(f"/api/v1/functions/{fid}"), 404)
    error_shape(other.delete(f"/api/v1/functions/{fid}"), 404)
    error_shape(other.execute(fid, b"x"), 404)
    error_shape(other.get(f"/api/v1/functions/{fid}/executions"), 404)
    assert other.get("/api/v1/functions/me").json() == []
    assert client.get(f"/api/v1/functions/{fid}").status_code == 200


def test_malformed_ids_are_404(client):
    for bad in ("123", "zzzzzzzzzzzzzzzzzzzzzzzz", "0" * 25, "%00", "..%2F..%2Fetc"):
        error_shape(client.get(f"/api/v1/functions/{bad}"), 404)
        error_shape(client.get(f"/api/v1/executions/{bad}"), 404)


def test_functions_need_a_token(stack):
    error_shape(requests.get(stack.url + "/api/v1/functions/me"), 401)
    error_shape(requests.post(stack.url + "/api/v1/functions", json={"image": ECHO}), 401)
