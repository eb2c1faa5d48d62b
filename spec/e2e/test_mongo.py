"""The MongoDB store with several API replicas: shared state, a database that goes away and
comes back, and injection attempts. Runs against its own FerretDB (scripts/ferretdb.sh)."""
import os
import shutil
import subprocess
import tempfile

import pytest
import requests

from conftest import ROOT, Client, free_port, lua_str, wait_for
from test_users import error_shape

FERRET = os.path.join(ROOT, "scripts", "ferretdb.sh")
# these start their own FerretDB: once per `make test` (the SQLite stage) is enough
pytestmark = pytest.mark.skipif(os.environ.get("FAAS_TEST_STORE") == "mongodb",
                                reason="runs in the sqlite stage with its own FerretDB")


class Ferret:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="faas-ferret-")
        self.pid = None
        self.start()

    @property
    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self):
        out = subprocess.run([FERRET, "start", str(self.port), self.dir], capture_output=True,
                             text=True, cwd=ROOT, check=True)
        self.pid = out.stdout.strip().splitlines()[-1]

    def stop(self):
        subprocess.run([FERRET, "stop", self.pid], cwd=ROOT, check=True)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def ferret():
    f = Ferret()
    yield f
    f.close()


def mongo_store(ferret):
    return (f'{{ driver = "mongodb", uri = {lua_str(ferret.uri)}, '
            f'database = {lua_str("e2e_" + os.urandom(5).hex())}, timeout = 1500 }}')


def test_two_apis_and_two_workers_share_one_database(fresh_stack, ferret):
    s = fresh_stack(workers=2, apis=2, store=mongo_store(ferret))
    a, b = s.apis[0].url, s.apis[1].url
    c = Client(a)
    r = requests.post(a + "/api/v1/users", json={"email": c.email, "password": c.password})
    assert r.status_code == 201
    r = requests.post(b + "/api/v1/users/login", json={"email": c.email, "password": c.password})
    assert r.status_code == 201
    c.token = r.json()["token"]
    fid = c.function("faas-test/echo:latest")
    eid = c.post(f"/api/v1/functions/execute/{fid}", base=b, data=b"shared").json()["executionId"]
    for base in (a, b):
        rec = c.get(f"/api/v1/executions/{eid}", base=base).json()
        assert rec["status"] == "succeeded" and rec["stdout"] == "shared"


def test_the_database_going_away_is_a_quick_503_and_recovery_is_automatic(fresh_stack, ferret):
    s = fresh_stack(workers=1, store=mongo_store(ferret))
    c = Client(s.url).register()
    fid = c.function("faas-test/echo:latest")
    eid = c.execute(fid, b"before").json()["executionId"]
    ferret.stop()
    # answered within the store timeout: a hang would raise requests' Timeout here
    error_shape(c.get("/api/v1/users/me", timeout=8), 503)
    assert requests.get(s.url + "/readyz").status_code == 503
    ferret.start()
    wait_for(lambda: requests.get(s.url + "/readyz").status_code == 200, 30, 0.2,
             what="recovery without a restart")
    rec = c.get(f"/api/v1/executions/{eid}").json()
    assert rec["status"] == "succeeded" and rec["stdout"] == "before"
    assert c.execute(fid, b"after").json()["result"] == "after"


def test_injection_through_string_fields_changes_nothing(fresh_stack, ferret):
    s = fresh_stack(workers=0, store=mongo_store(ferret))
    victim = Client(s.url).register()
    for email in ('{"$gt":""}', "$where@example.com", "a.b$c@example.com"):
        r = requests.post(s.url + "/api/v1/users/login",
                          json={"email": email, "password": victim.password})
        error_shape(r, 401)
    r = requests.post(s.url + "/api/v1/users/login",
                      json={"email": {"$gt": ""}, "password": victim.password})
    error_shape(r, 400)
    attacker = Client(s.url).register()
    for name in ("$where", "a.b", "$gt"):
        r = attacker.post("/api/v1/functions", json={"image": "faas-test/echo:latest", "name": name})
        assert r.status_code in (201, 400), r.text
        if r.status_code == 201:
            got = attacker.get(f"/api/v1/functions/{r.json()['functionId']}").json()
            assert got["name"] == name
    r = attacker.post("/api/v1/functions", json={"image": "faas-test/echo:latest",
                                                 "env": {"A": '{"$ne": null}'}})
    assert r.status_code == 201
    assert [f["name"] for f in victim.get("/api/v1/functions/me").json()] == []
    assert victim.get("/api/v1/users/me").json()["email"] == victim.email
