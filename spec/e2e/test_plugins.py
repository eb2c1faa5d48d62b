"""The shipped plugins change API behaviour as documented, through the real server and worker;
hostile plugins are contained; reload keeps the old set when the new one is broken; quotas
hold across two API processes."""
import os
import shutil
import signal

import requests

from conftest import ROOT, Client, wait_for
from test_users import error_shape

ECHO = "faas-test/echo:latest"


def plugins_conf(entries, dir=None, extra=""):
    d = f'dir = "{dir}", ' if dir else ""
    return "{ " + d + 'lua_dir = "' + os.path.join(ROOT, "lua") + '", ' + extra + \
        "enabled = { " + ", ".join(entries) + " } }"


def test_image_policy_denies_and_requires_tags(fresh_stack):
    s = fresh_stack(workers=0, plugins=plugins_conf([
        '{ name = "image_policy", conf = { allow = { "^faas%-test/" }, deny = { "evil" }, '
        'require_tag = true } }'], dir=os.path.join(ROOT, "plugins")))
    c = Client(s.url).register()
    assert c.post("/api/v1/functions", json={"image": ECHO}).status_code == 201
    r = error_shape(c.post("/api/v1/functions", json={"image": "faas-test/echo"}), 400)
    assert "tag" in r["message"]
    error_shape(c.post("/api/v1/functions", json={"image": "other/app:1"}), 400)
    error_shape(c.post("/api/v1/functions", json={"image": "faas-test/evil:1"}), 400)


def test_input_limits_and_output_plugins_shape_executions(fresh_stack):
    s = fresh_stack(workers=1, plugins=plugins_conf([
        '{ name = "input_limits", conf = { max_bytes = 64, require_json = true } }',
        '{ name = "output", conf = { strip_ansi = true, trim = true, parse_json = true } }'],
        dir=os.path.join(ROOT, "plugins")))
    c = Client(s.url).register()
    fid = c.function(ECHO)
    error_shape(c.execute(fid, b"not json"), 400)
    error_shape(c.execute(fid, b'{"a":"' + b"x" * 100 + b'"}'), 413)
    body = c.execute(fid, b'  {"a": 1}\x1b[31m  ').json()
    assert body["result"] == '{"a": 1}'
    assert body["json"] == {"a": 1}


def test_redact_replaces_patterns_in_output(fresh_stack):
    s = fresh_stack(workers=1, plugins=plugins_conf([
        '{ name = "redact", conf = { patterns = { "%d%d%d%d%-%d%d%d%d" }, replacement = "***" } }'],
        dir=os.path.join(ROOT, "plugins")))
    c = Client(s.url).register()
    body = c.execute(c.function(ECHO), b"card 1234-5678 ok").json()
    assert body["result"] == "card *** ok" and body["stdout"] == "card *** ok"


def test_quota_holds_across_two_api_processes(fresh_stack):
    s = fresh_stack(workers=1, apis=2, plugins=plugins_conf([
        '{ name = "quota", conf = { executions_per_minute = 10, max_functions = 2, '
        'max_concurrent = 100 } }'], dir=os.path.join(ROOT, "plugins")))
    c = Client(s.url).register()
    fid = c.function(ECHO)
    c.function(ECHO)
    error_shape(c.post("/api/v1/functions", json={"image": ECHO, "name": "third"}), 429)
    codes = []
    for i in range(14):
        base = s.apis[i % 2].url
        r = c.post(f"/api/v1/functions/execute/{fid}", base=base, data=b"x",
                   params={"async": "true"})
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) > 0
    assert codes.count(202) == 10 and codes.count(429) == 4


HOSTILE = {
    "boom": 'error("x")',
    "spin": "while true do end",
    "hog": 'local s = string.rep("x", 1e9)',
    "grow": "local t = {} for i = 1, 1e9 do t[i] = i end",
    "swallow": "while true do pcall(function() while true do end end) end",
    "osexec": 'os.execute("touch /tmp/pwned")',
    "ioopen": 'io.open("/etc/passwd")',
    "bytecode": 'load("\\27Lua")()',
    "reqos": 'require "os"',
    "dbg": "debug.sethook()",
    "meta": "setmetatable(_G, {})",
    # tampering with the API table must not work: faas.log still answers afterwards
    "rawapi": "pcall(rawset, faas, 'log', nil) faas.log('info', 'api intact')",
    "gcstop": 'collectgarbage("stop")',
}


def write_hostile(d):
    for name, body in HOSTILE.items():
        with open(os.path.join(d, f"{name}.lua"), "w") as f:
            f.write(f'return {{ name = "{name}", version = "1.0.0", priority = 1,\n'
                    f'  validate_execution = function(req, ctx) {body} end }}\n')


def test_hostile_plugins_are_contained(fresh_stack):
    import tempfile
    d = tempfile.mkdtemp()
    write_hostile(d)
    for name in HOSTILE:
        s = fresh_stack(workers=0, plugins=plugins_conf([f'"{name}"'], dir=d,
                                                         extra="time_budget = 100, "
                                                               'memory_limit = "16m", '))
        c = Client(s.url).register()
        fid = c.function(ECHO)
        r = c.execute(fid, b"x", params={"async": "true"}, timeout=20)
        if name == "rawapi":
            assert r.status_code == 202, r.text   # the tampering changed nothing
        else:
            assert r.status_code == 500, (name, r.status_code, r.text)
            assert name not in r.json()["message"]   # neutral message to the client
            assert f'{name}' in s.apis[0].log()      # the log names the plugin
        assert requests.get(s.url + "/healthz").status_code == 200
        assert c.get("/api/v1/users/me").status_code == 200
        assert not os.path.exists("/tmp/pwned")
        s.close()
    shutil.rmtree(d)


def test_reload_keeps_the_old_plugins_when_the_new_ones_are_broken(fresh_stack):
    import tempfile
    d = tempfile.mkdtemp()
    path = os.path.join(d, "gate.lua")

    def write(body):
        with open(path, "w") as f:
            f.write(body)
    write('return { name = "gate", version = "1.0.0", priority = 1,\n'
          '  validate_execution = function(req, ctx) return 403, "closed" end }\n')
    s = fresh_stack(workers=0, plugins=plugins_conf(['"gate"'], dir=d))
    c = Client(s.url).register()
    fid = c.function(ECHO)
    assert error_shape(c.execute(fid, b"x"), 403)["message"] == "closed"
    write("return { this is not lua")
    s.apis[0].p.send_signal(signal.SIGHUP)
    wait_for(lambda: "keeping the running plugins" in s.apis[0].log(), 10, what="reload refusal")
    assert error_shape(c.execute(fid, b"x"), 403)["message"] == "closed"
    write('return { name = "gate", version = "1.0.1", priority = 1,\n'
          '  validate_execution = function(req, ctx) return 451, "gone" end }\n')
    s.apis[0].p.send_signal(signal.SIGHUP)
    wait_for(lambda: c.execute(fid, b"x").status_code == 451, 10, what="reloaded plugin")
    shutil.rmtree(d)
