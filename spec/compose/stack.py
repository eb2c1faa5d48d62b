"""The docker-compose stack of compose/ brought up for real, with the local stand-ins of
compose/docker-compose.test.yml, under a unique project name; always taken down with -v."""
import json
import os
import secrets
import socket
import subprocess
import time
import uuid

import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMPOSE_DIR = os.path.join(ROOT, "compose")
REPORT = os.path.join(ROOT, "build", "compose-stack.txt")


def run(argv, check=True, env=None, timeout=600, **kw):
    p = subprocess.run(argv, env=env, timeout=timeout, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout[-4000:]}")
    return p.stdout


def wait_for(pred, timeout, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # not up yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def note(line):
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    with open(REPORT, "a") as f:
        f.write(line + "\n")


class Stack:
    def __init__(self, apis=2, workers=3):
        self.project = "faascompose" + uuid.uuid4().hex[:8]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = subprocess.check_output(["mktemp", "-d"], text=True).strip()
        self.env_file = os.path.join(self.tmp, "stack.env")
        with open(self.env_file, "w") as f:
            f.write(f"FAAS_JWT_SECRET={secrets.token_urlsafe(32)}\n"
                    "FAAS_MONGO_URI=mongodb://mongo:27017\nFAAS_MONGO_DATABASE=faas\n")
        self.env = dict(os.environ, FAAS_ENV_FILE=self.env_file, FAAS_HTTP_BIND="127.0.0.1",
                        FAAS_HTTP_PORT=str(self.port), FAAS_IMAGE_PREFIX="faas-composetest",
                        FAAS_VERSION="latest", COMPOSE_PROJECT_NAME=self.project)
        self.env.pop("DOCKER_BUILDKIT", None)
        self.apis, self.workers = apis, workers
        self.worker_ids = set()
        os.makedirs(os.path.dirname(REPORT), exist_ok=True)
        open(REPORT, "w").close()

    def compose(self, *args, check=True, timeout=600):
        argv = ["docker-compose", "-p", self.project,
                "-f", os.path.join(COMPOSE_DIR, "docker-compose.yml"),
                "-f", os.path.join(COMPOSE_DIR, "docker-compose.test.yml"), *args]
        return run(argv, check=check, env=self.env, timeout=timeout, cwd=COMPOSE_DIR)

    def prepare(self):
        """Stand-in base images, test function images, the api/worker images (cached)."""
        t = time.time()
        run([os.path.join(ROOT, "scripts", "standins.sh")], timeout=1800)
        run([os.path.join(ROOT, "scripts", "test-images.sh")], timeout=600)
        note(f"stand-ins and test images ready in {time.time() - t:.1f} s")
        t = time.time()
        self.compose("build", "-q", timeout=1800)
        note(f"api/worker images built in {time.time() - t:.1f} s")

    def up(self):
        t = time.time()
        self.compose("up", "-d", "--scale", f"api={self.apis}", "--scale",
                     f"worker={self.workers}")
        wait_for(self.all_healthy, 120, 0.2, "every container healthy")
        wait_for(lambda: requests.get(self.url + "/readyz", timeout=2).status_code == 200,
                 60, 0.2, "the gateway")
        self.up_seconds = time.time() - t
        note(f"stack up ({self.apis} api, {self.workers} workers, gateway, nats, mongo) "
             f"from cached images in {self.up_seconds:.1f} s")
        for c in self.containers("worker"):
            self.worker_ids.add(self.hostname(c))

    def containers(self, service=None, all=False):
        args = ["docker", "ps", "-q", "--no-trunc", "--filter",
                f"label=com.docker.compose.project={self.project}"]
        if all:
            args.append("-a")
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        return run(args).split()

    def inspect(self, cid):
        return json.loads(run(["docker", "inspect", cid]))[0]

    def hostname(self, cid):
        return self.inspect(cid)["Config"]["Hostname"]

    def all_healthy(self):
        ids = self.containers()
        if len(ids) != 3 + self.apis + self.workers:
            return False
        return all(self.inspect(c)["State"].get("Health", {}).get("Status") == "healthy"
                   for c in ids)

    def exec_get(self, cid, url):
        """GET inside a container (the backend network is internal, nothing is published)."""
        return run(["docker", "exec", cid, "curl", "-fsS", "--max-time", "5", url])

    def logs(self):
        return self.compose("logs", "--no-color", "--tail", "60", check=False)

    def function_containers(self):
        out = set()
        for wid in self.worker_ids:
            out.update(run(["docker", "ps", "-aq", "--filter", f"label=faas.worker={wid}"]).split())
        return out

    def down(self):
        out = self.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        # Function containers a killed worker left behind (the others remove their own).
        leftovers = self.function_containers()
        if leftovers:
            run(["docker", "rm", "-f", *leftovers], check=False)
        return out

    def leftovers(self):
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": run(["docker", "ps", "-aq", "--filter", label]).split(),
            "networks": run(["docker", "network", "ls", "-q", "--filter", label]).split(),
            "volumes": run(["docker", "volume", "ls", "-q", "--filter", label]).split(),
            "function containers": sorted(self.function_containers()),
        }

    def cleanup(self):
        self.down()
        run(["rm", "-rf", self.tmp], check=False)


class Client:
    def __init__(self, base):
        self.base = base
        self.email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        self.password = "correct horse battery"
        self.token = None

    def register(self):
        r = requests.post(self.base + "/api/v1/users",
                          json={"email": self.email, "password": self.password}, timeout=30)
        assert r.status_code == 201, r.text
        self.user_id = r.json()["userId"]
        r = requests.post(self.base + "/api/v1/users/login",
                          json={"email": self.email, "password": self.password}, timeout=30)
        assert r.status_code == 201, r.text
        self.token = r.json()["token"]
        return self

    def req(self, method, path, **kw):
        kw.setdefault("timeout", 90)
        kw["headers"] = {"Authorization": f"Bearer {self.token}", **kw.get("headers", {})}
        return requests.request(method, self.base + path, **kw)

    def function(self, image, **fields):
        body = {"image": image, "name": f"fn-{uuid.uuid4().hex[:8]}", **fields}
        r = self.req("POST", "/api/v1/functions", json=body)
        assert r.status_code == 201, r.text
        return r.json()["functionId"]

    def execute(self, fid, data=b"", **kw):
        return self.req("POST", f"/api/v1/functions/execute/{fid}", data=data, **kw)

    def execution(self, eid):
        r = self.req("GET", f"/api/v1/executions/{eid}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_execution(self, eid, timeout=90):
        def done():
            rec = self.execution(eid)
            return rec if rec["status"] not in ("queued", "running") else None
        return wait_for(done, timeout, 0.2, f"execution {eid}")
