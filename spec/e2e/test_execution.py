"""Executions end to end: real NATS JetStream, real workers, real Docker containers."""
import concurrent.futures
import os

import requests

from conftest import wait_for
from test_users import error_shape

IMG = "faas-test/{}:latest"


def fn(client, name, **kw):
    return client.function(IMG.format(name), **kw)


def test_echo_returns_its_input_in_the_seed_shape(client):
    fid = fn(client, "echo")
    r = client.execute(fid, b"hello world")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "succeeded" and body["exitCode"] == 0
    assert body["result"] == "hello world" and body["stdout"] == "hello world"
    assert body["stderr"] == "" and body["durationMs"] >= 0
    assert len(body["executionId"]) == 24
    rec = client.get(f"/api/v1/executions/{body['executionId']}").json()
    assert rec["status"] == "succeeded" and rec["stdout"] == "hello world"
    assert rec["functionId"] == fid and rec["attempts"] >= 1 and rec["worker"]
    for k in ("createdAt", "startedAt", "finishedAt"):
        assert rec[k].endswith("Z")


def test_the_seed_path_and_text_plain_work(client):
    fid = fn(client, "echo")
    r = client.post(f"/api/v1/functions/{fid}", data=b"seed path",
                    headers={"Accept": "text/plain"})
    assert r.status_code == 201 and r.text == "seed path"
    assert r.headers["Content-Type"].startswith("text/plain")


def test_binary_input_round_trips_byte_for_byte(client):
    fid = fn(client, "echo")
    data = bytes(range(256)) * 64 + os.urandom(4096)
    r = client.execute(fid, data, headers={"Accept": "application/octet-stream"})
    assert r.status_code == 201 and r.content == data
    eid = r.headers["X-Execution-Id"]
    raw = client.get(f"/api/v1/executions/{eid}/stdout")
    assert raw.status_code == 200 and raw.content == data
    js = client.get(f"/api/v1/executions/{eid}").json()
    assert "\ufffd" in js["stdout"]  # invalid UTF-8 replaced in JSON, exact bytes one call away


def test_non_zero_exit_is_failed_with_its_code_and_stderr(client):
    fid = fn(client, "fail")
    body = client.execute(fid).json()
    assert body["status"] == "failed" and body["exitCode"] == 3
    assert "err" in body["stderr"] and "out" in body["stdout"]


def test_output_interleaving_is_kept_in_result(client):
    fid = fn(client, "interleave")
    body = client.execute(fid).json()
    lines = [l for l in body["result"].splitlines() if l]
    assert lines == ["out1", "err1", "out2", "err2", "out3", "err3", "out4", "err4"]


def test_an_endless_loop_is_killed_at_its_timeout(client):
    fid = fn(client, "sleep", timeout=1)
    body = client.execute(fid).json()
    assert body["status"] == "timed_out"


def test_a_fork_bomb_is_contained(client, stack):
    fid = fn(client, "forkbomb", timeout=3)
    body = client.execute(fid).json()
    assert body["status"] in ("timed_out", "failed")
    # the platform is fine afterwards
    echo = fn(client, "echo")
    assert client.execute(echo, b"still here").json()["result"] == "still here"


def test_a_memory_hog_is_oom_killed(client):
    fid = fn(client, "memhog", memory="32m", timeout=20)
    body = client.execute(fid).json()
    assert body["status"] == "failed" and body["reason"] == "oom_killed"


def test_huge_output_is_capped_and_reported(client, stack):
    fid = fn(client, "bigout", timeout=30)
    r = client.execute(fid, headers={"Accept": "application/octet-stream"})
    assert r.status_code == 201
    assert len(r.content) == 1 << 20
    eid = r.headers["X-Execution-Id"]
    rec = client.get(f"/api/v1/executions/{eid}").json()
    assert rec["reason"] == "output_truncated"


def test_functions_have_no_network(client):
    fid = fn(client, "netls")
    body = client.execute(fid).json()
    assert body["stdout"].split() == ["lo"]


def test_root_is_read_only_and_tmp_is_writable(client):
    body = client.execute(fn(client, "fsprobe")).json()
    assert body["stdout"].split() == ["root=ro", "tmp=rw", "tmpexec=no"]


def test_env_vars_arrive(client):
    fid = fn(client, "env", env={"GREETING": "hola", "EMPTY": ""})
    out = client.execute(fid).json()["stdout"]
    assert "GREETING=hola" in out.splitlines()


def test_a_missing_image_ends_as_error_image_not_found(client):
    fid = client.function("faas-test/does-not-exist:latest")
    body = client.execute(fid).json()
    assert body["status"] == "error" and body["reason"] == "image_not_found"


def test_async_returns_202_with_location_and_the_result_is_recorded(client):
    fid = fn(client, "echo")
    r = client.execute(fid, b"later", params={"async": "true"})
    assert r.status_code == 202
    eid = r.json()["executionId"]
    assert r.json()["status"] == "queued"
    assert r.headers["Location"] == f"/api/v1/executions/{eid}"
    rec = client.wait_execution(eid)
    assert rec["status"] == "succeeded" and rec["stdout"] == "later"


def test_an_execution_shows_running_while_it_runs(client):
    fid = fn(client, "slow", timeout=20)
    eid = client.execute(fid, b"tick", params={"async": "true"}).json()["executionId"]
    running = wait_for(lambda: (lambda r: r if r["status"] == "running" else None)(
        client.get(f"/api/v1/executions/{eid}").json()), 20, 0.05, what="running")
    assert running["worker"] and running["startedAt"]
    assert client.wait_execution(eid)["status"] == "succeeded"


def test_a_sync_wait_past_the_limit_answers_202(fresh_stack):
    from conftest import Client
    s = fresh_stack(workers=1, server={"sync_wait": "1"})
    c = Client(s.url).register()
    fid = c.function(IMG.format("sleep"), timeout=4)
    r = c.execute(fid)
    assert r.status_code == 202 and r.headers["Location"].endswith(r.json()["executionId"])
    rec = c.wait_execution(r.json()["executionId"])
    assert rec["status"] == "timed_out"


def test_executions_are_listed_newest_first_with_a_cursor(client):
    fid = fn(client, "echo")
    ids = [client.execute(fid, str(i).encode()).json()["executionId"] for i in range(5)]
    page1 = client.get(f"/api/v1/functions/{fid}/executions", params={"limit": 2}).json()
    assert [e["executionId"] for e in page1["executions"]] == ids[::-1][:2]
    page2 = client.get(f"/api/v1/functions/{fid}/executions",
                       params={"limit": 2, "cursor": page1["nextCursor"]}).json()
    assert [e["executionId"] for e in page2["executions"]] == ids[::-1][2:4]
    error_shape(client.get(f"/api/v1/functions/{fid}/executions", params={"limit": 0}), 400)
    error_shape(client.get(f"/api/v1/functions/{fid}/executions",
                           params={"cursor": "0123456789abcdef01234567"}), 400)


def test_another_users_execution_is_404(client, other):
    eid = client.execute(fn(client, "echo"), b"mine").json()["executionId"]
    error_shape(other.get(f"/api/v1/executions/{eid}"), 404)
    error_shape(other.get(f"/api/v1/executions/{eid}/stdout"), 404)


def test_oversized_input_is_413(client):
    fid = fn(client, "echo")
    error_shape(client.execute(fid, b"x" * ((1 << 20) + 1)), 413)


def test_fifty_concurrent_executions_each_get_their_own_result(client):
    fid = fn(client, "echo")

    def one(i):
        data = f"payload-{i}-{os.urandom(8).hex()}".encode()
        r = client.execute(fid, data)
        return data.decode(), r.status_code, r.json().get("result")
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    for data, status, result in results:
        assert status == 201 and result == data
