"""End-to-end harness: real nats-server, real Docker, real SQLite (or MongoDB via FerretDB),
and the real faas-api / faas-worker binaries, all on free loopback ports, cleaned up after."""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, os.environ.get("FAAS_BIN", "bin"))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
SECRET = "e2e-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Proc:
    """A child process with its log in a file; stop() is SIGTERM then SIGKILL."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.env = env
        self.p = None
        self.start()

    def start(self):
        log = open(self.log_path, "ab")
        self.p = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                  env=self.env, cwd=ROOT, start_new_session=True)
        log.close()

    def alive(self):
        return self.p and self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if not self.alive():
            return self.p.returncode if self.p else None
        self.p.send_signal(sig)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class Nats:
    def __init__(self, tmp):
        self.port = free_port()
        self.dir = os.path.join(tmp, "nats")
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(tmp, "nats.conf")
        with open(conf, "w") as f:
            f.write(f'listen: 127.0.0.1:{self.port}\nmax_payload: 8MB\n'
                    f'jetstream {{ store_dir: "{self.dir}" }}\n')
        self.proc = Proc("nats", ["nats-server", "-c", conf], tmp)
        self.wait()

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def wait(self):
        def up():
            with socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
        wait_for(up, 10, what="nats-server")

    def stop(self):
        self.proc.stop()

    def start(self):
        self.proc.start()
        self.wait()


def lua_str(s):
    return json.dumps(s)


class Stack:
    """nats-server + N workers + M APIs sharing one store, each on free ports."""

    def __init__(self, workers=1, apis=1, plugins=None, extra=None, worker_conf=None,
                 limits=None, server=None, store=None):
        self.closed = False
        self.tmp = tempfile.mkdtemp(prefix="faas-e2e-")
        self.nats = Nats(self.tmp)
        self.store = store or default_store(self.tmp)
        self.plugins = plugins
        self.extra = extra or ""
        self.worker_conf = worker_conf or {}
        self.limits = limits or {}
        self.server = server or {}
        self.apis = []
        self.workers = []
        self.configs = {}
        for i in range(apis):
            self.add_api()
        for i in range(workers):
            self.add_worker()
        for a in self.apis:
            self.wait_ready(a)

    def config(self, name, api_port=0, worker_port=0, worker_id="w"):
        lim = {"timeout": '{ default = 10, max = 60 }', "memory": '{ default = "64m", max = "512m" }',
               "cpus": "{ default = 1, max = 2 }", "pids": "64", "input": '"1m"'}
        lim.update(self.limits)
        srv = {"listen": '"127.0.0.1"', "port": str(api_port), "threads": "8",
               "sync_wait": "30", "body_limit": '"2m"'}
        srv.update(self.server)
        wk = {"id": lua_str(worker_id), "concurrency": "4", "pull_policy": '"never"',
              "listen": '"127.0.0.1"', "port": str(worker_port), "reap_interval": "2",
              "output_limit": '"1m"'}
        wk.update(self.worker_conf)
        plugins = self.plugins if self.plugins is not None else "{ enabled = {} }"
        body = f"""
server = {{ {", ".join(f"{k} = {v}" for k, v in srv.items())} }}
auth = {{ jwt_secret = env("FAAS_JWT_SECRET"), token_ttl = 3600 }}
store = {self.store}
nats = {{ url = {lua_str(self.nats.url)}, max_deliver = 3, ack_wait = 10 }}
worker = {{ {", ".join(f"{k} = {v}" for k, v in wk.items())} }}
limits = {{ {", ".join(f"{k} = {v}" for k, v in lim.items())} }}
plugins = {plugins}
log = {{ level = "debug" }}
{self.extra}
"""
        path = os.path.join(self.tmp, f"{name}.lua")
        with open(path, "w") as f:
            f.write(body)
        return path

    def env(self):
        e = dict(os.environ)
        e["FAAS_JWT_SECRET"] = SECRET
        e.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
        return e

    def add_api(self):
        i = len(self.apis)
        port = free_port()
        conf = self.config(f"api{i}", api_port=port)
        p = Proc(f"api{i}", [os.path.join(BIN, "faas-api"), "--config", conf], self.tmp,
                 self.env())
        p.port = port
        p.url = f"http://127.0.0.1:{port}"
        p.conf = conf
        self.apis.append(p)
        return p

    def add_worker(self, worker_id=None):
        i = len(self.workers)
        port = free_port()
        wid = worker_id or f"w{i}-{uuid.uuid4().hex[:6]}"
        conf = self.config(f"worker{i}", worker_port=port, worker_id=wid)
        p = Proc(f"worker{i}", [os.path.join(BIN, "faas-worker"), "--config", conf], self.tmp,
                 self.env())
        p.port = port
        p.url = f"http://127.0.0.1:{port}"
        p.worker_id = wid
        self.workers.append(p)
        wait_for(lambda: requests.get(p.url + "/healthz", timeout=1).ok, 15, what="worker")
        return p

    def wait_ready(self, api):
        wait_for(lambda: requests.get(api.url + "/readyz", timeout=1).status_code == 200, 20,
                 what=f"{api.name} ready")

    @property
    def url(self):
        return self.apis[0].url

    def close(self):
        if self.closed:
            return
        self.closed = True
        for p in self.apis + self.workers:
            p.stop()
        self.nats.stop()
        # a sanitizer build (FAAS_BIN=bin-asan) reports into the logs: any report fails
        reports = [p.name for p in self.apis + self.workers
                   if any(m in p.log() for m in SANITIZER_MARKS)]
        if os.environ.get("FAAS_KEEP_TMP") or reports:
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        assert not reports, f"sanitizer reports in {reports}: see {self.tmp}"

    def logs(self):
        return "\n".join(f"--- {p.name}\n{p.log()[-4000:]}" for p in self.apis + self.workers)


def default_store(tmp):
    if os.environ.get("FAAS_TEST_STORE") == "mongodb":
        uri = os.environ["FAAS_TEST_MONGO_URI"]
        db = "e2e_" + uuid.uuid4().hex[:10]
        return f'{{ driver = "mongodb", uri = {lua_str(uri)}, database = {lua_str(db)} }}'
    return f'{{ driver = "sqlite", path = {lua_str(os.path.join(tmp, "faas.db"))} }}'


class Client:
    """A user of the API: registers, logs in, sends authenticated requests."""

    def __init__(self, base):
        self.base = base
        self.email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        self.password = "correct horse battery"
        self.token = None
        self.user_id = None

    def register(self):
        r = requests.post(self.base + "/api/v1/users",
                          json={"email": self.email, "password": self.password})
        assert r.status_code == 201, r.text
        self.user_id = r.json()["userId"]
        r = requests.post(self.base + "/api/v1/users/login",
                          json={"email": self.email, "password": self.password})
        assert r.status_code == 201, r.text
        self.token = r.json()["token"]
        return self

    def headers(self, extra=None):
        h = {"Authorization": f"Bearer {self.token}"}
        h.update(extra or {})
        return h

    def req(self, method, path, base=None, **kw):
        kw.setdefault("timeout", 60)
        kw["headers"] = self.headers(kw.get("headers"))
        return requests.request(method, (base or self.base) + path, **kw)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, **kw):
        return self.req("POST", path, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)

    def function(self, image, **fields):
        body = {"image": image, **fields}
        body.setdefault("name", f"fn-{uuid.uuid4().hex[:8]}")
        r = self.post("/api/v1/functions", json=body)
        assert r.status_code == 201, r.text
        return r.json()["functionId"]

    def execute(self, fid, data=b"", **kw):
        return self.post(f"/api/v1/functions/execute/{fid}", data=data, **kw)

    def wait_execution(self, eid, timeout=60):
        def done():
            r = self.get(f"/api/v1/executions/{eid}")
            if r.status_code == 200 and r.json()["status"] not in ("queued", "running"):
                return r.json()
        return wait_for(done, timeout, 0.1, what=f"execution {eid}")


def images_built():
    subprocess.run([os.path.join(ROOT, "scripts", "test-images.sh")], check=True,
                   stdout=subprocess.DEVNULL)
    return True


@pytest.fixture(scope="session")
def images():
    return images_built()


@pytest.fixture(scope="session")
def stack(images):
    s = Stack(workers=2)
    yield s
    s.close()


@pytest.fixture
def client(stack):
    return Client(stack.url).register()


@pytest.fixture
def other(stack):
    return Client(stack.url).register()


@pytest.fixture
def fresh_stack(images):
    stacks = []

    def make(**kw):
        s = Stack(**kw)
        stacks.append(s)
        return s
    yield make
    for s in stacks:
        s.close()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
