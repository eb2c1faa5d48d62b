"""Failures of the parts: a worker killed mid-run, NATS restarted with work queued, the API
restarted while executions run. Nothing is lost, nothing is recorded twice."""
import json
import os
import socket
import subprocess

from conftest import Client, wait_for

IMG = "faas-test/{}:latest"


def containers_of(execution_id):
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=faas.execution={execution_id}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_a_killed_worker_execution_is_redelivered_and_recorded_once(fresh_stack):
    s = fresh_stack(workers=1, worker_conf={"id": '"victim"'})
    c = Client(s.url).register()
    fid = c.function(IMG.format("slow"), timeout=30)
    eid = c.execute(fid, b"survivor", params={"async": "true"}).json()["executionId"]
    wait_for(lambda: containers_of(eid), 20, what="the execution's container")
    s.workers[0].kill9()
    # the same worker comes back: it reaps its orphan and the message is redelivered
    s.workers[0].start()
    rec = c.wait_execution(eid, timeout=90)
    assert rec["status"] == "succeeded" and rec["stdout"] == "survivor"
    assert rec["attempts"] == 2
    listed = c.get(f"/api/v1/functions/{fid}/executions").json()["executions"]
    assert [e["executionId"] for e in listed] == [eid]
    wait_for(lambda: containers_of(eid) == [], 30, what="orphan containers reaped")


def test_nats_restart_with_200_queued_executions_loses_none(fresh_stack):
    s = fresh_stack(workers=0)
    c = Client(s.url).register()
    fid = c.function(IMG.format("echo"))
    ids = {}
    for i in range(200):
        r = c.execute(fid, f"job-{i}".encode(), params={"async": "true"})
        assert r.status_code == 202, r.text
        ids[r.json()["executionId"]] = f"job-{i}"
    s.nats.stop()
    s.nats.start()
    s.wait_ready(s.apis[0])
    s.add_worker()
    s.add_worker()
    for eid, data in ids.items():
        rec = c.wait_execution(eid, timeout=180)
        assert rec["status"] == "succeeded" and rec["stdout"] == data
        assert rec["attempts"] == 1
    seen, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = c.get(f"/api/v1/functions/{fid}/executions", params=params).json()
        seen += [e["executionId"] for e in page["executions"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids)


def test_results_published_while_the_api_is_down_are_recorded(fresh_stack):
    s = fresh_stack(workers=1)
    c = Client(s.url).register()
    fid = c.function(IMG.format("slow"), timeout=30)
    ids = [c.execute(fid, f"r{i}".encode(), params={"async": "true"}).json()["executionId"]
           for i in range(3)]
    api = s.apis[0]
    assert api.stop() == 0  # graceful: exit 0
    # the worker finishes them while no API runs
    wait_for(lambda: all(not containers_of(e) for e in ids) and
             s.workers[0].log().count('"finished') >= 3, 60, 0.5, what="runs to finish")
    api.start()
    s.wait_ready(api)
    for i, eid in enumerate(ids):
        rec = c.wait_execution(eid, timeout=30)
        assert rec["status"] == "succeeded" and rec["stdout"] == f"r{i}"


def test_nats_down_at_request_time_is_a_quick_503(fresh_stack):
    s = fresh_stack(workers=0)
    c = Client(s.url).register()
    fid = c.function(IMG.format("echo"))
    s.nats.stop()
    r = c.execute(fid, b"x", timeout=10)
    assert r.status_code == 503 and r.json()["statusCode"] == 503
    s.nats.start()
    s.wait_ready(s.apis[0])
    r = c.execute(fid, b"x", params={"async": "true"})
    assert r.status_code == 202


def test_worker_sigterm_exits_cleanly(fresh_stack):
    s = fresh_stack(workers=1)
    assert s.workers[0].stop() == 0
    assert json.loads(s.workers[0].log().strip().splitlines()[-1])["msg"] == "stopped"


def auto_id_host():
    """The host part of an automatic worker id, as config.c writes it."""
    host = socket.gethostname()[:40] or "worker"
    return "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in host)


def test_workers_on_automatic_ids_keep_apart_and_reap_a_dead_ones_containers(fresh_stack):
    # a container left by a crashed automatic-id worker of this host (its pid is gone)
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = subprocess.run(
        ["docker", "create", "--label", "faas.managed=true",
         "--label", f"faas.worker={auto_id_host()}-{gone.pid}",
         "--label", "faas.execution=orphan-of-a-dead-worker", IMG.format("sleep")],
        capture_output=True, text=True, check=True).stdout.strip()
    # and one of a worker that is alive (this test process stands in for it): never touched
    alive = subprocess.run(
        ["docker", "create", "--label", "faas.managed=true",
         "--label", f"faas.worker={auto_id_host()}-{os.getpid()}",
         "--label", "faas.execution=container-of-a-live-worker", IMG.format("sleep")],
        capture_output=True, text=True, check=True).stdout.strip()
    try:
        s = fresh_stack(workers=2, worker_conf={"id": "nil"})
        c = Client(s.url).register()
        fid = c.function(IMG.format("slow"), timeout=30)
        # 6 executions of 3 s over two workers whose reapers run every 2 s: a reaper that took
        # the other worker's containers for orphans would end some of them
        ids = [c.execute(fid, f"job-{i}".encode(), params={"async": "true"}).json()["executionId"]
               for i in range(6)]
        recs = [c.wait_execution(e, timeout=90) for e in ids]
        assert [r["status"] for r in recs] == ["succeeded"] * 6
        assert sorted(r["stdout"] for r in recs) == sorted(f"job-{i}" for i in range(6))
        workers = {r["worker"] for r in recs}
        assert all(w.startswith(auto_id_host() + "-") for w in workers), workers
        wait_for(lambda: not subprocess.run(["docker", "ps", "-aq", "--filter", f"id={orphan}"],
                                            capture_output=True, text=True).stdout.strip(),
                 20, what="the dead worker's container reaped")
        assert subprocess.run(["docker", "ps", "-aq", "--filter", f"id={alive}"],
                              capture_output=True, text=True).stdout.strip()
    finally:
        subprocess.run(["docker", "rm", "-f", orphan, alive], capture_output=True)
