"""Users, login, JWT and the hostile-input battery, against the real faas-api."""
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid

import requests

from conftest import SECRET, Client, b64url


def error_shape(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["statusCode"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["error"], str) and body["error"]
    return body


def sign(header, payload, secret=SECRET):
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(sig)}"


def claims_of(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    import base64
    return json.loads(base64.urlsafe_b64decode(payload))


def me(stack, token):
    return requests.get(stack.url + "/api/v1/users/me",
                        headers={"Authorization": f"Bearer {token}"})


def test_creates_a_user_and_logs_in(stack):
    c = Client(stack.url)
    r = requests.post(stack.url + "/api/v1/users", json={"email": c.email, "password": c.password})
    assert r.status_code == 201
    assert r.json()["message"] == "User created successfully."
    uid = r.json()["userId"]
    assert len(uid) == 24
    r = requests.post(stack.url + "/api/v1/users/login",
                      json={"email": c.email, "password": c.password})
    assert r.status_code == 201
    assert r.json()["message"] == "User logged successfully."
    token = r.json()["token"]
    claims = claims_of(token)
    assert claims["sub"] == uid and claims["userId"] == uid
    assert claims["email"] == c.email and claims["key"] == c.email
    assert claims["exp"] > claims["iat"]
    r = me(stack, token)
    assert r.status_code == 200
    assert r.json() == {"userId": uid, "email": c.email}


def test_rejects_a_duplicate_email_in_any_case(stack, client):
    r = requests.post(stack.url + "/api/v1/users",
                      json={"email": client.email.upper(), "password": "another password"})
    error_shape(r, 409)


def test_login_failures_look_the_same(stack, client):
    a = requests.post(stack.url + "/api/v1/users/login",
                      json={"email": client.email, "password": "wrong password"})
    b = requests.post(stack.url + "/api/v1/users/login",
                      json={"email": "nobody-" + client.email, "password": "wrong password"})
    assert error_shape(a, 401)["message"] == "Invalid credentials"
    assert error_shape(b, 401)["message"] == "Invalid credentials"
    assert a.json() == b.json()


def test_rejects_invalid_emails_and_weak_passwords(stack):
    for body in ({"email": "not-an-email", "password": "long enough"},
                 {"email": "a@b", "password": "long enough"},
                 {"email": "two@@example.com", "password": "long enough"},
                 {"email": "sp ace@example.com", "password": "long enough"},
                 {"email": "x" * 300 + "@example.com", "password": "long enough"},
                 {"email": f"ok-{uuid.uuid4().hex}@example.com", "password": "short"},
                 {"email": f"ok-{uuid.uuid4().hex}@example.com", "password": "p" * 1025}):
        error_shape(requests.post(stack.url + "/api/v1/users", json=body), 400)


def test_deleting_a_user_revokes_every_token_and_cascades(stack):
    c = Client(stack.url).register()
    fid = c.function("faas-test/echo:latest")
    old_token = c.token
    r = c.delete("/api/v1/users/me")
    assert r.status_code == 200
    assert r.json()["message"] == f"User email {c.email} deleted successfully."
    error_shape(me(stack, old_token), 401)
    # the same email registers again as a new user who sees nothing of the old one
    c2 = Client(stack.url)
    c2.email = c.email
    c2.register()
    assert c2.user_id != c.user_id
    error_shape(me(stack, old_token), 401)
    assert c2.get("/api/v1/functions/me").json() == []
    error_shape(c2.get(f"/api/v1/functions/{fid}"), 404)


# ---- JWT ----

def base_claims(client, **over):
    now = int(time.time())
    c = {"sub": client.user_id, "userId": client.user_id, "email": client.email,
         "key": client.email, "iat": now, "exp": now + 600, "ver": claims_of(client.token)["ver"]}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def test_accepts_a_token_we_sign_the_same_way(stack, client):
    assert me(stack, sign({"alg": "HS256", "typ": "JWT"}, base_claims(client))).status_code == 200


def test_rejects_alg_none_and_other_algorithms(stack, client):
    claims = base_claims(client)
    h = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    p = b64url(json.dumps(claims).encode())
    error_shape(me(stack, f"{h}.{p}."), 401)
    for alg in ("none", "RS256", "ES256", "HS512", "HS384", "hs256"):
        error_shape(me(stack, sign({"alg": alg, "typ": "JWT"}, claims)), 401)


def test_rejects_tampered_and_foreign_tokens(stack, client, other):
    t = client.token
    h, p, s = t.split(".")
    forged_payload = b64url(json.dumps(base_claims(client, sub=other.user_id,
                                                   userId=other.user_id)).encode())
    error_shape(me(stack, f"{h}.{forged_payload}.{s}"), 401)
    bad_sig = s[:-2] + ("AA" if s[-2:] != "AA" else "BB")
    error_shape(me(stack, f"{h}.{p}.{bad_sig}"), 401)
    error_shape(me(stack, sign({"alg": "HS256"}, base_claims(client),
                               secret="another-secret-that-is-long-enough-0123456789")), 401)


def test_rejects_expired_not_yet_valid_and_incomplete_tokens(stack, client):
    now = int(time.time())
    hdr = {"alg": "HS256", "typ": "JWT"}
    assert error_shape(me(stack, sign(hdr, base_claims(client, exp=now - 5))), 401)
    error_shape(me(stack, sign(hdr, base_claims(client, nbf=now + 600))), 401)
    error_shape(me(stack, sign(hdr, base_claims(client, exp=None))), 401)
    error_shape(me(stack, sign(hdr, base_claims(client, sub=None, userId=None))), 401)
    error_shape(me(stack, sign(hdr, base_claims(client, ver=None))), 401)
    error_shape(me(stack, sign({"alg": "HS256", "typ": "JWS"}, base_claims(client))), 401)
    error_shape(me(stack, sign(hdr, base_claims(client, ver=12345))), 401)


def test_rejects_missing_and_odd_authorization_headers(stack, client):
    url = stack.url + "/api/v1/users/me"
    error_shape(requests.get(url), 401)
    for value in ("", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token " + client.token,
                  client.token, "Bearer a.b", "Bearer a.b.c.d", "Bearer " + "A" * 10000,
                  "Bearer ....", "Bearer " + client.token + "x"):
        error_shape(requests.get(url, headers={"Authorization": value}), 401)
    assert requests.get(url, headers={"Authorization": "bearer " + client.token}).status_code == 200


# ---- hostile input battery ----

def post_raw(stack, path, body, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return requests.post(stack.url + path, data=body, headers=h)


def test_hostile_bodies_get_a_clear_4xx_and_the_server_keeps_serving(stack):
    path = "/api/v1/users"
    cases = [b"{", b"not json", b"[]", b"\"string\"", b"42", b"null", b"",
             b'{"email": 1, "password": "long enough"}',
             b'{"email": {"$ne": null}, "password": "long enough"}',
             b'{"email": "a@example.com", "password": {"$gt": ""}}',
             b'{"email": ["a@example.com"], "password": "long enough"}',
             b'{"password": "long enough"}', b'{"email": "a@example.com"}',
             b'{"email": "\xff\xfe@example.com", "password": "long enough"}',
             b'{"email": "a\x00b@example.com", "password": "long enough"}',
             b'{"email": "a\\u0000b@example.com", "password": "long enough"}',
             b'{"email": "' + b"a" * (1 << 20) + b'@example.com", "password": "long enough"}']
    for body in cases:
        r = post_raw(stack, path, body)
        assert 400 <= r.status_code < 500, (body[:60], r.status_code, r.text)
        error_shape(r, r.status_code)
    for body in cases[:5]:
        r = post_raw(stack, "/api/v1/users/login", body)
        assert 400 <= r.status_code < 500
    assert requests.get(stack.url + "/healthz").status_code == 200


def test_a_10_mb_body_is_413(stack):
    r = post_raw(stack, "/api/v1/users", b"{" + b" " * (10 << 20) + b"}")
    error_shape(r, 413)
    assert requests.get(stack.url + "/healthz").status_code == 200


def test_chunked_bodies_are_read_and_limited(stack):
    c = Client(stack.url)

    def gen(data):
        for i in range(0, len(data), 7):
            yield data[i:i + 7]
    body = json.dumps({"email": c.email, "password": c.password}).encode()
    r = requests.post(stack.url + "/api/v1/users", data=gen(body),
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    big = b"{" + b" " * (3 << 20) + b"}"
    r = requests.post(stack.url + "/api/v1/users", data=(big[i:i + 65536]
                      for i in range(0, len(big), 65536)))
    error_shape(r, 413)


def test_a_slow_client_does_not_block_others(stack):
    s = socket.create_connection(("127.0.0.1", stack.apis[0].port))
    body = b'{"email":"slow@example.com","password":"long enough"}'
    s.sendall(b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    done = threading.Event()

    def dribble():
        for b in body[:10]:
            if done.is_set():
                break
            s.sendall(bytes([b]))
            time.sleep(0.5)
    t = threading.Thread(target=dribble)
    t.start()
    for _ in range(5):
        assert requests.get(stack.url + "/healthz", timeout=5).status_code == 200
    # the five requests were answered while the slow client was still mid-body
    still_dribbling = t.is_alive()
    done.set()
    t.join()
    s.close()
    assert still_dribbling


def test_unknown_routes_and_methods_use_the_error_shape(stack):
    error_shape(requests.get(stack.url + "/nope"), 404)
    r = requests.put(stack.url + "/api/v1/users/me")
    error_shape(r, 405)
    assert "GET" in r.headers.get("Allow", "")


def test_request_ids_are_echoed_or_generated(stack):
    r = requests.get(stack.url + "/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    r = requests.get(stack.url + "/healthz", headers={"X-Request-Id": "bad id\x7f"})
    assert r.headers["X-Request-Id"] != "bad id\x7f" and len(r.headers["X-Request-Id"]) > 0


def test_readyz_reports_nats_down(fresh_stack):
    s = fresh_stack(workers=0)
    assert requests.get(s.url + "/readyz").status_code == 200
    s.nats.stop()
    r = requests.get(s.url + "/readyz")
    assert r.status_code == 503 and "nats" in r.json()["message"]
    s.nats.start()
    s.wait_ready(s.apis[0])


def test_serves_an_openapi_document_of_every_route_without_a_token(stack):
    r = requests.get(stack.url + "/api/v1/openapi.json")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    routes = {("post", "/api/v1/users"), ("post", "/api/v1/users/login"),
              ("get", "/api/v1/users/me"), ("delete", "/api/v1/users/me"),
              ("post", "/api/v1/functions"), ("get", "/api/v1/functions/me"),
              ("get", "/api/v1/functions/{id}"), ("delete", "/api/v1/functions/{id}"),
              ("post", "/api/v1/functions/{id}"), ("post", "/api/v1/functions/execute/{id}"),
              ("get", "/api/v1/functions/{id}/executions"), ("get", "/api/v1/executions/{id}"),
              ("get", "/api/v1/executions/{id}/stdout"), ("get", "/healthz"), ("get", "/readyz"),
              ("get", "/metrics")}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    assert routes <= documented
