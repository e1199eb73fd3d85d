#!/usr/bin/python3
"""End-to-end test of mollie-sim over real HTTPS (stdlib only).

Starts the simulator on port 0 with a freshly generated test CA, then checks every endpoint,
error, control call and fault mode that tests/mollie_sim/README.md promises.
Prints "N passed, M failed" last; exits non-zero on any failure.
"""

import argparse
import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

CLIENT_ID = "app_testclient"
SECRET = "secret_s3cr3t+/="  # characters that need care in Basic auth and forms
REDIRECT = "https://broker.example/oauth/callback?tenant=t1"
TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "testdata",
                        "mollie")
TOKEN_RE = {
    "auth_": re.compile(r"^auth_[A-Za-z0-9]{30}$"),
    "access_": re.compile(r"^access_[A-Za-z0-9]{30}$"),
    "refresh_": re.compile(r"^refresh_[A-Za-z0-9]{30}$"),
}

passed = 0
failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {name} {detail}", flush=True)
    return condition


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name)


class Sim:
    """One running mollie-sim process."""

    def __init__(self, binary, ca_dir, workdir, name, extra=()):
        self.ca_dir = ca_dir
        self.port_file = os.path.join(workdir, f"{name}.port")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        args = [binary, "--listen", "127.0.0.1:0", "--port-file", self.port_file,
                "--cert", os.path.join(ca_dir, "server.pem"),
                "--key", os.path.join(ca_dir, "server.key"), *extra]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)

        def port_ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"mollie-sim exited early ({self.proc.returncode}); "
                                   f"see {self.log_path}")
            try:
                with open(self.port_file) as f:
                    text = f.read()
            except FileNotFoundError:
                return None
            return text if text.endswith("\n") else None

        text = wait_for(port_ready, 10, "the port file")
        check("port file is digits + newline", re.fullmatch(r"\d+\n", text) is not None, repr(text))
        self.port = int(text)
        self.ctx = ssl.create_default_context(cafile=os.path.join(ca_dir, "ca.pem"))

    def connection(self, timeout=5.0):
        return http.client.HTTPSConnection("localhost", self.port, context=self.ctx,
                                           timeout=timeout)

    def call(self, method, path, body=None, headers=None, timeout=5.0, conn=None):
        c = conn or self.connection(timeout)
        if isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return Response(r.status, r.headers, data)

    def control(self, method, path, payload=None):
        body = json.dumps(payload) if payload is not None else None
        r = self.call(method, "/_sim/" + path, body,
                      {"Content-Type": "application/json"} if body else {})
        assert r.status == 200, (path, r.status, r.body)
        return r.json()

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self.log.close()
        return rc

    # --- OAuth helpers -------------------------------------------------------------------

    def authorize(self, client_id=CLIENT_ID, **params):
        query = {"client_id": client_id, **params}
        query = {k: v for k, v in query.items() if v is not None}
        return self.call("GET", "/oauth2/authorize?" + urllib.parse.urlencode(query))

    def code(self, scope="organizations.read payments.read", redirect_uri=None, **params):
        r = self.authorize(state="st", scope=scope, response_type="code",
                           redirect_uri=redirect_uri, **params)
        assert r.status == 302, (r.status, r.body)
        return urllib.parse.parse_qs(urllib.parse.urlsplit(r.header("Location")).query)["code"][0]

    def tokens(self, fields, auth="basic", fmt="form", method="POST", client=CLIENT_ID,
               secret=SECRET):
        fields = dict(fields)
        headers = {}
        if auth == "basic":
            raw = f"{client}:{secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif auth == "body":
            fields["client_id"] = client
            fields["client_secret"] = secret
        if fmt == "json":
            headers["Content-Type"] = "application/json"
            body = json.dumps(fields)
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urllib.parse.urlencode(fields)
        return self.call(method, "/oauth2/tokens", body, headers)

    def exchange(self, code, redirect_uri=None, **kw):
        fields = {"grant_type": "authorization_code", "code": code}
        if redirect_uri is not None:
            fields["redirect_uri"] = redirect_uri
        return self.tokens(fields, **kw)

    def refresh(self, refresh_token, redirect_uri=None, **kw):
        fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if redirect_uri is not None:
            fields["redirect_uri"] = redirect_uri
        return self.tokens(fields, **kw)

    def grant(self, **params):
        r = self.exchange(self.code(**params))
        assert r.status == 200, (r.status, r.body)
        return r.json()

    def me(self, access_token=None, conn=None):
        headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        return self.call("GET", "/v2/organizations/me", headers=headers, conn=conn)

    def truth(self):
        t = self.control("GET", "truth")
        return ({a["token"]: a for a in t["access_tokens"]},
                {r["token"]: r for r in t["refresh_tokens"]}, t)


def location_params(r):
    parts = urllib.parse.urlsplit(r.header("Location") or "")
    return parts, urllib.parse.parse_qs(parts.query, keep_blank_values=True)


def fixture(name):
    with open(os.path.join(TESTDATA, name)) as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------
# Test groups


def test_flags(binary, ca_dir, workdir):
    def run(*args):
        return subprocess.run([binary, *args], capture_output=True, timeout=10)

    r = run("--help")
    check("--help exits 0", r.returncode == 0 and b"--port-file" in r.stdout, r)
    cert = ["--cert", os.path.join(ca_dir, "server.pem"), "--key",
            os.path.join(ca_dir, "server.key")]
    for bad in (["--bogus"], [], ["--cert", "x"], cert + ["--access-token-ttl", "soon"],
                cert + ["--listen", "nohost"], cert + ["--client-id", "notanapp"],
                cert + ["--client-secret", "a", "--client-secret-file", "/dev/null"],
                cert + ["--redirect-uri", "not a uri"], cert + ["--port-file"],
                cert + ["--client-secret-file", os.path.join(workdir, "missing")]):
        r = run(*bad)
        check(f"bad flags {bad[-2:]} exit 2", r.returncode == 2 and r.stderr, r)
    r = run("--cert", "/nonexistent.pem", "--key", "/nonexistent.key")
    check("unreadable certificate exits 1", r.returncode == 1, r)


def test_authorize(sim):
    r = sim.authorize(client_id="app_unknown", state="s", scope="organizations.read",
                      response_type="code")
    check("unknown client_id: 400 HTML, no redirect",
          r.status == 400 and r.header("Location") is None
          and r.header("Content-Type").startswith("text/html"), (r.status, r.body))
    r = sim.authorize(redirect_uri="https://evil.example/cb", state="s",
                      scope="organizations.read", response_type="code")
    check("foreign redirect_uri: 400 HTML", r.status == 400 and r.header("Location") is None)

    def error_redirect(name, want_error, want_state, **params):
        r = sim.authorize(**params)
        parts, q = location_params(r)
        ok = (r.status == 302 and f"{parts.scheme}://{parts.netloc}{parts.path}" ==
              "https://broker.example/oauth/callback" and q.get("tenant") == ["t1"]
              and q.get("error") == [want_error] and len(q.get("error_description", [""])[0]) > 0
              and q.get("state") == ([want_state] if want_state else None) and "code" not in q)
        check(name, ok, (r.status, r.header("Location")))
        return q

    error_redirect("missing state: invalid_request", "invalid_request", None,
                   scope="organizations.read", response_type="code")
    error_redirect("missing scope: invalid_request", "invalid_request", "s1", state="s1",
                   response_type="code")
    error_redirect("response_type=token: unsupported_response_type", "unsupported_response_type",
                   "s2", state="s2", scope="organizations.read", response_type="token")
    error_redirect("missing response_type: invalid_request", "invalid_request", "s3",
                   state="s3", scope="organizations.read")
    error_redirect("unknown scope: invalid_scope", "invalid_scope", "s4", state="s4",
                   scope="organizations.read bogus.write", response_type="code")
    q = error_redirect("deny: access_denied", "access_denied", "s 5&x=é", state="s 5&x=é",
                       scope="organizations.read", response_type="code", sim_decision="deny")
    check("deny description", q.get("error_description", [""])[0].startswith("The user denied"))
    r = sim.authorize(state="s", scope="organizations.read", response_type="code",
                      sim_decision="maybe")
    check("bad sim_decision: 400", r.status == 400)

    state = "a b+c&d=e/é"
    r = sim.authorize(state=state, scope="organizations.read", response_type="code",
                      redirect_uri=REDIRECT, approval_prompt="auto", locale="nl_NL",
                      landing_page="login")
    parts, q = location_params(r)
    check("approve: 302 with code and state",
          r.status == 302 and q.get("state") == [state] and q.get("tenant") == ["t1"]
          and TOKEN_RE["auth_"].match(q.get("code", [""])[0]) is not None,
          r.header("Location"))
    check("approve: Location has no raw spaces", " " not in r.header("Location"))


def test_code_flow(sim, fixtures_dir_ok):
    bad_code = fixture("error_bad_request.json") if fixtures_dir_ok else None
    stats0 = sim.control("GET", "stats")

    # Basic auth, form body.
    code = sim.code(sim_org="org_flow1", sim_name="Flow One B.V.")
    r = sim.exchange(code)
    check("exchange (Basic, form): 200", r.status == 200, (r.status, r.body))
    check("token content type", r.header("Content-Type") == "application/json; charset=utf-8")
    body = r.json()
    check("token body: exactly five fields in order",
          list(body) == ["access_token", "refresh_token", "expires_in", "token_type", "scope"],
          body)
    check("token body values",
          TOKEN_RE["access_"].match(body["access_token"]) is not None
          and TOKEN_RE["refresh_"].match(body["refresh_token"]) is not None
          and body["expires_in"] == 3600 and type(body["expires_in"]) is int
          and body["token_type"] == "bearer"
          and body["scope"] == "organizations.read payments.read", body)
    check("fixture shape matches", set(body) == set(fixture("token_single.json")))
    first = body

    r = sim.exchange(code)
    check("code reuse: 400 invalid_grant (exact fixture body)",
          r.status == 400 and r.json() == bad_code, (r.status, r.body))
    r = sim.exchange("auth_" + "x" * 30)
    check("unknown code: 400 invalid_grant", r.status == 400 and r.json() == bad_code)
    r = sim.exchange(code + "y")
    check("mangled code: 400 invalid_grant", r.status == 400 and r.json() == bad_code)

    # Body credentials, JSON body.
    code = sim.code(sim_org="org_flow2")
    r = sim.exchange(code, auth="body", fmt="json")
    check("exchange (body credentials, JSON): 200", r.status == 200, (r.status, r.body))
    # Body credentials, form body.
    r = sim.exchange(sim.code(sim_org="org_flow2"), auth="body", fmt="form")
    check("exchange (body credentials, form): 200", r.status == 200, (r.status, r.body))
    # Basic, JSON body.
    r = sim.exchange(sim.code(sim_org="org_flow2"), auth="basic", fmt="json")
    check("exchange (Basic, JSON): 200", r.status == 200, (r.status, r.body))

    # Expiry: a code TTL of 0 makes every new code expire at once (no waiting).
    sim.control("POST", "config", {"code_ttl_seconds": 0})
    code = sim.code(sim_org="org_flow1")
    sim.control("POST", "config", {"code_ttl_seconds": 30})
    r = sim.exchange(code)
    check("expired code: 400 invalid_grant", r.status == 400 and r.json() == bad_code, r.body)

    # redirect_uri consistency.
    code = sim.code(redirect_uri=REDIRECT, sim_org="org_flow3")
    r = sim.exchange(code)
    check("exchange without the authorize redirect_uri: 400 invalid_request",
          r.status == 400 and r.json()["error"] == "invalid_request", r.body)
    r = sim.exchange(code, redirect_uri="https://broker.example/other")
    check("exchange with another redirect_uri: 400 invalid_grant",
          r.status == 400 and r.json()["error"] == "invalid_grant", r.body)
    r = sim.exchange(code, redirect_uri=REDIRECT)
    check("exchange with the same redirect_uri: 200 (code survived failed tries)",
          r.status == 200, r.body)
    with_redirect = r.json()

    # Refresh: same refresh token, new access token, the old one stays valid.
    r = sim.refresh(first["refresh_token"])
    check("refresh: 200", r.status == 200, r.body)
    ref = r.json()
    check("refresh: same refresh token, new access token",
          ref["refresh_token"] == first["refresh_token"]
          and ref["access_token"] != first["access_token"]
          and list(ref) == list(first) and ref["scope"] == first["scope"], ref)
    check("old access token still works after refresh", sim.me(first["access_token"]).status == 200)
    r = sim.refresh(first["refresh_token"], auth="body", fmt="json")
    check("refresh with body credentials and JSON: 200", r.status == 200, r.body)

    r = sim.refresh(with_redirect["refresh_token"])
    check("refresh without the required redirect_uri: 400 invalid_request",
          r.status == 400 and r.json()["error"] == "invalid_request", r.body)
    r = sim.refresh(with_redirect["refresh_token"], redirect_uri="https://broker.example/x")
    check("refresh with another redirect_uri: 400 invalid_grant",
          r.status == 400 and r.json()["error"] == "invalid_grant", r.body)
    r = sim.refresh(with_redirect["refresh_token"], redirect_uri=REDIRECT)
    check("refresh with the original redirect_uri: 200", r.status == 200, r.body)

    r = sim.refresh("refresh_" + "z" * 30)
    check("unknown refresh token: 400 invalid_grant",
          r.status == 400 and r.json()["error"] == "invalid_grant"
          and r.json()["error_description"], r.body)

    # Strict rotation switched on at run time (replay is covered by test_rotation_replay).
    cfg = sim.control("POST", "config", {"rotate_refresh_tokens": True,
                                         "rotation_replay": False})
    check("config echoes rotation", cfg["rotate_refresh_tokens"] is True
          and cfg["rotation_replay"] is False and cfg["access_token_ttl_seconds"] == 3600, cfg)
    r = sim.refresh(first["refresh_token"])
    rotated = r.json()
    check("rotation: new refresh token", r.status == 200
          and rotated["refresh_token"] != first["refresh_token"]
          and TOKEN_RE["refresh_"].match(rotated["refresh_token"]) is not None, r.body)
    r = sim.refresh(first["refresh_token"])
    check("rotation: old refresh token dead at once",
          r.status == 400 and r.json()["error"] == "invalid_grant", r.body)
    r = sim.refresh(rotated["refresh_token"])
    check("rotation: new refresh token works", r.status == 200, r.body)
    rotated2 = r.json()
    access, refresh, _ = sim.truth()
    check("truth: rotated refresh tokens invalid, newest valid",
          refresh[first["refresh_token"]]["valid"] is False
          and refresh[rotated["refresh_token"]]["valid"] is False
          and refresh[rotated2["refresh_token"]]["valid"] is True
          and refresh[rotated2["refresh_token"]]["organization_id"] == "org_flow1")
    check("truth: earlier access tokens of the grant still valid",
          access[first["access_token"]]["valid"] and access[rotated["access_token"]]["valid"])
    check("truth: strict rotation leaves nothing replayable",
          not any(refresh[t]["replayable"] for t in (first["refresh_token"],
                                                     rotated["refresh_token"],
                                                     rotated2["refresh_token"])))
    cfg = sim.control("POST", "config", {"rotate_refresh_tokens": False, "rotation_replay": True})
    check("config: rotation off, replay back on", cfg["rotate_refresh_tokens"] is False
          and cfg["rotation_replay"] is True, cfg)

    # Token endpoint request errors.
    r = sim.tokens({"grant_type": "client_credentials"})
    check("unsupported grant: 400 unsupported_grant_type",
          r.status == 400 and r.json()["error"] == "unsupported_grant_type", r.body)
    r = sim.tokens({"code": "auth_x"})
    check("missing grant_type: 400 invalid_request",
          r.status == 400 and r.json()["error"] == "invalid_request", r.body)
    r = sim.tokens({"grant_type": "authorization_code"})
    check("missing code: 400 invalid_request",
          r.status == 400 and r.json()["error"] == "invalid_request", r.body)
    r = sim.tokens({"grant_type": "refresh_token"})
    check("missing refresh_token: 400 invalid_request",
          r.status == 400 and r.json()["error"] == "invalid_request", r.body)
    r = sim.call("POST", "/oauth2/tokens", "{not json", {
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()})
    check("malformed JSON body: 400 invalid_request",
          r.status == 400 and r.json()["error"] == "invalid_request", r.body)

    # Client authentication.
    code = sim.code(sim_org="org_flow1")
    for name, kw in (("wrong secret (Basic)", {"secret": "nope"}),
                     ("wrong secret (body)", {"auth": "body", "secret": "nope"}),
                     ("unknown client (Basic)", {"client": "app_other"}),
                     ("no credentials", {"auth": None})):
        r = sim.exchange(code, **kw)
        check(f"{name}: 401 invalid_client", r.status == 401
              and r.json()["error"] == "invalid_client" and r.json()["error_description"],
              (r.status, r.body))
    r = sim.exchange(code, secret="nope")
    check("401 with Basic carries WWW-Authenticate", r.header("WWW-Authenticate") is not None)
    check("code still usable after failed client auth", sim.exchange(code).status == 200)

    stats = sim.control("GET", "stats")
    check("stats: code exchanges counted",
          stats["code_exchanges"] - stats0["code_exchanges"] == 6, stats)
    check("stats: refreshes counted (successes only)",
          stats["refreshes"] - stats0["refreshes"] == 5
          and stats["refreshes_by_organization"].get("org_flow1") == 4
          and stats["refreshes_by_organization"].get("org_flow3") == 1, stats)
    check("stats: every token request counted", stats["token_requests"] -
          stats0["token_requests"] == 31, stats)


def test_revoke(sim):
    g = sim.grant(sim_org="org_rev")
    a2 = sim.refresh(g["refresh_token"]).json()["access_token"]
    revocations0 = sim.control("GET", "stats")["revocations"]

    r = sim.tokens({"token_type_hint": "access_token"}, method="DELETE")
    check("revoke without token: 400 exact body", r.status == 400 and r.json() == {
        "error": "invalid_request", "error_description": "You need to provide the 'token' field"},
        r.body)
    r = sim.tokens({"token": g["access_token"]}, method="DELETE")
    check("revoke without token_type_hint: 400 invalid_request",
          r.status == 400 and r.json()["error"] == "invalid_request", r.body)
    r = sim.tokens({"token_type_hint": "access_token", "token": g["access_token"]},
                   method="DELETE", secret="bad")
    check("revoke with bad client: 401 invalid_client",
          r.status == 401 and r.json()["error"] == "invalid_client", r.body)

    r = sim.tokens({"token_type_hint": "access_token", "token": g["access_token"]},
                   method="DELETE")
    check("revoke access token: 204 empty", r.status == 204 and r.body == b"", (r.status, r.body))
    check("revoked access token: 401", sim.me(g["access_token"]).status == 401)
    check("sibling access token still valid", sim.me(a2).status == 200)
    check("refresh token still valid after access revoke",
          sim.refresh(g["refresh_token"]).status == 200)

    r = sim.tokens({"token_type_hint": "refresh_token", "token": g["refresh_token"]},
                   method="DELETE", auth="body", fmt="json")
    check("revoke refresh token (body credentials, JSON): 204", r.status == 204, r.body)
    check("refresh after revoke: 400 invalid_grant",
          sim.refresh(g["refresh_token"]).json().get("error") == "invalid_grant")
    check("access tokens of revoked grant: 401", sim.me(a2).status == 401)
    access, refresh, _ = sim.truth()
    check("truth: whole grant invalid", refresh[g["refresh_token"]]["valid"] is False
          and not any(a["valid"] for a in access.values() if a["organization_id"] == "org_rev"))
    r = sim.tokens({"token_type_hint": "refresh_token", "token": "refresh_unknown"},
                   method="DELETE")
    check("revoke unknown token: 204", r.status == 204)
    check("stats: revocations", sim.control("GET", "stats")["revocations"] - revocations0 == 3)

    # Revocation from Mollie's side.
    g1 = sim.grant(sim_org="org_side")
    g2 = sim.grant(sim_org="org_side")
    other = sim.grant(sim_org="org_side_other")
    r = sim.control("POST", "revoke", {"organization_id": "org_side"})
    check("/_sim/revoke answers", r.get("revoked_grants") == 2, r)
    check("/_sim/revoke: refresh dead", sim.refresh(g1["refresh_token"]).status == 400
          and sim.refresh(g2["refresh_token"]).status == 400)
    check("/_sim/revoke: access dead", sim.me(g2["access_token"]).status == 401)
    check("/_sim/revoke: other org untouched", sim.me(other["access_token"]).status == 200)


def test_force(sim):
    old1 = sim.grant(sim_org="org_force")
    old2 = sim.grant(sim_org="org_force")
    other = sim.grant(sim_org="org_force_other")
    check("auto re-authorization keeps earlier grants",
          sim.me(old1["access_token"]).status == 200 and sim.refresh(old1["refresh_token"]).status
          == 200)
    code = sim.code(sim_org="org_force", approval_prompt="force")
    check("force: earlier grants live until the code is exchanged",
          sim.me(old2["access_token"]).status == 200)
    r = sim.exchange(code)
    check("force exchange: 200", r.status == 200, r.body)
    new = r.json()
    check("force: earlier refresh tokens revoked",
          sim.refresh(old1["refresh_token"]).status == 400
          and sim.refresh(old2["refresh_token"]).status == 400)
    check("force: earlier access tokens revoked", sim.me(old1["access_token"]).status == 401
          and sim.me(old2["access_token"]).status == 401)
    check("force: new grant valid", sim.me(new["access_token"]).status == 200
          and sim.refresh(new["refresh_token"]).status == 200)
    check("force: other organizations untouched", sim.me(other["access_token"]).status == 200)


def test_api(sim):
    unauthorized = fixture("error_unauthorized.json")
    a = sim.control("POST", "organizations", {"id": "org_7049691", "name": "Acme B.V.",
                                               "email": "finance@acme.example"})
    check("/_sim/organizations echoes", a == {"id": "org_7049691", "name": "Acme B.V.",
                                              "email": "finance@acme.example"}, a)
    g = sim.grant(sim_org="org_7049691")
    r = sim.me(g["access_token"])
    check("organizations/me: 200 hal+json",
          r.status == 200 and r.header("Content-Type").startswith("application/hal+json"))
    body = r.json()
    want = fixture("organization_current.json")
    check("organizations/me: fixture shape with the org's id, name, email",
          body["id"] == "org_7049691" and body["name"] == "Acme B.V."
          and body["email"] == "finance@acme.example" and body["resource"] == "organization"
          and set(body) == set(want) and set(body["_links"]) == set(want["_links"])
          and body["_links"]["dashboard"]["href"].endswith("org_7049691"), body)

    g_new1 = sim.grant()
    g_new2 = sim.grant(sim_name="Named Shop")
    b1 = sim.me(g_new1["access_token"]).json()
    b2 = sim.me(g_new2["access_token"]).json()
    m1 = re.fullmatch(r"org_(\d+)", b1["id"])
    check("default: a new organization each time", m1 is not None and b1["id"] != b2["id"]
          and b1["name"] == f"Merchant {m1.group(1)}" and b2["name"] == "Named Shop", (b1, b2))
    check("default organization ids start at org_1000001", int(m1.group(1)) >= 1000001)

    for name, headers in (("missing token", {}),
                          ("unknown token", {"Authorization": "Bearer access_nope"}),
                          ("Basic instead of Bearer", {"Authorization": "Basic eDp5"}),
                          ("refresh token as bearer",
                           {"Authorization": f"Bearer {g['refresh_token']}"})):
        r = sim.call("GET", "/v2/organizations/me", headers=headers)
        check(f"organizations/me {name}: 401 exact HAL body",
              r.status == 401 and r.json() == unauthorized
              and r.header("Content-Type").startswith("application/hal+json"), (r.status, r.body))

    g_pay = sim.grant(scope="payments.read")
    r = sim.me(g_pay["access_token"])
    check("organizations/me without organizations.read: 403 HAL",
          r.status == 403 and r.json()["status"] == 403 and r.json()["title"] == "Forbidden"
          and "_links" in r.json(), (r.status, r.body))

    # Expiry without waiting: TTL 0 issues already-expired access tokens.
    sim.control("POST", "config", {"access_token_ttl_seconds": 0})
    r = sim.refresh(g["refresh_token"])
    sim.control("POST", "config", {"access_token_ttl_seconds": 3600})
    expired = r.json()
    check("ttl 0: expires_in 0", expired["expires_in"] == 0, expired)
    r = sim.me(expired["access_token"])
    check("expired access token: 401 exact HAL body", r.status == 401 and r.json() == unauthorized)
    access, _, t = sim.truth()
    check("truth: expired token invalid with expires_at_ms <= now_ms",
          access[expired["access_token"]]["valid"] is False
          and access[expired["access_token"]]["expires_at_ms"] <= t["now_ms"]
          and access[g["access_token"]]["valid"] is True
          and access[g["access_token"]]["expires_at_ms"] > t["now_ms"] + 3500 * 1000)

    r = sim.call("GET", "/v2/customers", headers={"Authorization": f"Bearer {g['access_token']}"})
    check("other /v2 paths: 404 HAL", r.status == 404 and r.json()["status"] == 404)

    # Keep-alive: several requests on one connection.
    conn = sim.connection()
    statuses = [sim.me(g["access_token"], conn=conn).status for _ in range(3)]
    statuses.append(sim.call("GET", "/_sim/stats", conn=conn).status)
    conn.close()
    check("keep-alive: 4 requests on one connection", statuses == [200, 200, 200, 200], statuses)

    r = sim.call("POST", "/oauth2/tokens", b"x" * (1024 * 1024 + 10),
                 {"Content-Type": "application/x-www-form-urlencoded"})
    check("body over 1 MiB: 413", r.status == 413, r.status)


def test_faults(sim):
    g = sim.grant(sim_org="org_fault")
    code_ok = sim.code(sim_org="org_fault")

    def fault(**payload):
        return sim.control("POST", "faults", payload)

    def expect_transport_failure(fn):
        try:
            fn()
        except (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError):
            return True
        return False

    simple = {
        "http_500": lambda r: r.status == 500,
        "http_503": lambda r: r.status == 503,
        "http_429": lambda r: r.status == 429 and r.header("Retry-After") == "7",
        "garbage": lambda r: r.status == 200 and not is_json(r.body),
        "missing_fields": lambda r: r.status == 200 and is_json(r.body)
        and "access_token" not in r.json() and "expires_in" not in r.json(),
        "invalid_client": lambda r: r.status == 401,
    }
    for mode, ok in simple.items():
        state0 = sim.truth()[2]
        fault(target="token", mode=mode, count=1, retry_after_seconds=7)
        r = sim.refresh(g["refresh_token"])
        check(f"fault {mode} on token endpoint", ok(r), (r.status, r.headers, r.body[:200]))
        check(f"fault {mode}: no state change", sim.truth()[2]["access_tokens"] ==
              state0["access_tokens"])
        check(f"fault {mode}: count 1 then normal", sim.refresh(g["refresh_token"]).status == 200)

        fault(target="api", mode=mode, count=1, retry_after_seconds=7)
        r = sim.me(g["access_token"])
        check(f"fault {mode} on api", ok(r), (r.status, r.body[:200]))
        check(f"fault {mode} on api: then normal", sim.me(g["access_token"]).status == 200)

    fault(target="token", mode="invalid_client")
    r = sim.refresh(g["refresh_token"])
    check("invalid_client fault body", r.json().get("error") == "invalid_client", r.body)

    fault(target="token", mode="http_503", count=2)
    check("count 2", [sim.refresh(g["refresh_token"]).status for _ in range(3)] == [503, 503, 200])
    fault(target="api", mode="http_500", count=-1)
    check("count -1 until cleared", all(sim.me(g["access_token"]).status == 500
                                        for _ in range(4)))
    check("api fault does not touch token endpoint", sim.refresh(g["refresh_token"]).status == 200)
    listed = sim.control("GET", "faults")["faults"]
    check("GET /_sim/faults lists the fault", len(listed) == 1 and listed[0]["count"] == -1, listed)
    fault(target="api", mode="none")
    check("mode none clears", sim.me(g["access_token"]).status == 200)
    fault(target="all", mode="http_429", count=2)
    check("target all hits token and api", sim.refresh(g["refresh_token"]).status == 429
          and sim.me(g["access_token"]).status == 429 and sim.me(g["access_token"]).status == 200)
    fault(target="all", mode="http_429", count=1)
    check("429 defaults Retry-After to 1", sim.me(g["access_token"]).header("Retry-After") == "1")
    r = sim.call("POST", "/_sim/faults", json.dumps({"target": "x", "mode": "hang"}),
                 {"Content-Type": "application/json"})
    check("bad fault target: 400", r.status == 400)
    r = sim.call("POST", "/_sim/faults", json.dumps({"target": "api", "mode": "explode"}),
                 {"Content-Type": "application/json"})
    check("bad fault mode: 400", r.status == 400)

    fault(target="token", mode="reset", count=1)
    check("fault reset: connection dropped without response",
          expect_transport_failure(lambda: sim.exchange(code_ok)))
    check("after reset: code unused, exchange works", sim.exchange(code_ok).status == 200)
    fault(target="api", mode="reset", count=1)
    check("fault reset on api", expect_transport_failure(lambda: sim.me(g["access_token"])))

    fault(target="token", mode="hang", count=1)
    conn = sim.connection(timeout=1.0)
    started = time.monotonic()
    hung = False
    try:
        sim.call("POST", "/oauth2/tokens", "grant_type=refresh_token", conn=conn)
    except (socket.timeout, TimeoutError):
        hung = True
    check("fault hang: no response within the client timeout", hung
          and time.monotonic() - started >= 0.9)
    check("while one request hangs, others are served", sim.me(g["access_token"]).status == 200)
    return conn  # left hanging; shutdown must still be prompt


def control_error(sim, method, path, payload):
    """A control call that must fail: returns the status."""
    body = json.dumps(payload) if payload is not None else None
    return sim.call(method, "/_sim/" + path, body,
                    {"Content-Type": "application/json"} if body else {}).status


def refresh_tokens_of(sim, org):
    return [t for t in sim.control("GET", "truth")["refresh_tokens"]
            if t["organization_id"] == org]


def test_rotation_replay(sim):
    cfg = sim.control("POST", "config", {"rotate_refresh_tokens": True})
    check("replay: rotation_replay is on by default", cfg["rotation_replay"] is True, cfg)
    g = sim.grant(sim_org="org_replay")
    r1 = g["refresh_token"]
    stats0 = sim.control("GET", "stats")

    # Step 1: R1 is used and rotated to R2.
    a = sim.refresh(r1)
    check("replay: R1 -> 200 with a new refresh token R2", a.status == 200
          and a.json()["refresh_token"] != r1, a.body)
    r2 = a.json()["refresh_token"]
    _, refresh, _ = sim.truth()
    check("replay: truth after R2 exists: R1 valid false, replayable true",
          refresh[r1]["valid"] is False and refresh[r1]["replayable"] is True, refresh[r1])
    check("replay: truth: R2 valid true, replayable false",
          refresh[r2]["valid"] is True and refresh[r2]["replayable"] is False, refresh[r2])

    # Step 2: R1 again (e.g. the reply was lost): R2 again, a new access token, nothing revoked.
    b = sim.refresh(r1)
    check("replay: R1 again -> 200 with the same R2 and a new access token",
          b.status == 200 and b.json()["refresh_token"] == r2
          and b.json()["access_token"] != a.json()["access_token"]
          and list(b.json()) == ["access_token", "refresh_token", "expires_in", "token_type",
                                 "scope"], b.body)
    c = sim.refresh(r1)
    check("replay: idempotent (third use of R1 -> R2 again)",
          c.status == 200 and c.json()["refresh_token"] == r2, c.body)
    tokens = refresh_tokens_of(sim, "org_replay")
    check("replay: no new refresh token issued by replays", len(tokens) == 2, tokens)
    check("replay: every access token still valid",
          all(sim.me(x.json()["access_token"]).status == 200 for x in (a, b, c))
          and sim.me(g["access_token"]).status == 200)
    stats = sim.control("GET", "stats")
    check("replay: stats count replays (and as refreshes)",
          stats["refresh_replays"] - stats0["refresh_replays"] == 2
          and stats["refreshes"] - stats0["refreshes"] == 3, stats)

    # Step 3: R2 is used: rotated to R3; from now on R1 is dead and R2 replayable.
    d = sim.refresh(r2)
    check("replay: R2 -> 200 with a new R3", d.status == 200
          and d.json()["refresh_token"] not in (r1, r2), d.body)
    r3 = d.json()["refresh_token"]
    e = sim.refresh(r1)
    check("replay: R1 after R2 was used -> 400 invalid_grant",
          e.status == 400 and e.json()["error"] == "invalid_grant", e.body)
    _, refresh, _ = sim.truth()
    check("replay: truth: R1 dead (not replayable), R2 replayable, R3 valid",
          refresh[r1]["valid"] is False and refresh[r1]["replayable"] is False
          and refresh[r2]["valid"] is False and refresh[r2]["replayable"] is True
          and refresh[r3]["valid"] is True and refresh[r3]["replayable"] is False)
    f = sim.refresh(r2)
    check("replay: R2 again -> R3", f.status == 200 and f.json()["refresh_token"] == r3, f.body)

    # Replay survives rotation being switched off; using R3 (unrotated) kills R2.
    sim.control("POST", "config", {"rotate_refresh_tokens": False})
    h = sim.refresh(r3)
    check("replay: rotation off: R3 -> R3", h.status == 200 and h.json()["refresh_token"] == r3)
    check("replay: R2 dead once R3 was used", sim.refresh(r2).status == 400)

    # A revoked grant has nothing replayable.
    sim.control("POST", "config", {"rotate_refresh_tokens": True})
    r4 = sim.refresh(r3).json()["refresh_token"]
    r = sim.tokens({"token_type_hint": "refresh_token", "token": r4}, method="DELETE")
    check("replay: revoke the current token: 204", r.status == 204)
    _, refresh, _ = sim.truth()
    check("replay: revoked grant: predecessor neither valid nor replayable",
          refresh[r3]["valid"] is False and refresh[r3]["replayable"] is False
          and sim.refresh(r3).status == 400)
    sim.control("POST", "config", {"rotate_refresh_tokens": False})


def test_new_faults(sim):
    g = sim.grant(sim_org="org_fault2")

    def fault(**payload):
        return sim.control("POST", "faults", payload)

    def transport_failure(fn):
        try:
            fn()
        except (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError):
            return True
        return False

    # http_400_invalid_grant: the grant type's invalid_grant, state untouched.
    code = sim.code(sim_org="org_fault2")
    state0 = sim.control("GET", "truth")
    fault(target="token", mode="http_400_invalid_grant", count=2)
    r = sim.refresh(g["refresh_token"])
    check("fault http_400_invalid_grant on refresh: refresh description",
          r.status == 400 and r.json() == {
              "error": "invalid_grant",
              "error_description": "Refresh token doesn't exist or is invalid for the client"},
          (r.status, r.body))
    r = sim.exchange(code)
    check("fault http_400_invalid_grant on code exchange: exact fixture body",
          r.status == 400 and r.json() == fixture("error_bad_request.json"), r.body)
    state1 = sim.control("GET", "truth")
    check("fault http_400_invalid_grant: no state change",
          state1["access_tokens"] == state0["access_tokens"]
          and state1["refresh_tokens"] == state0["refresh_tokens"])
    check("fault http_400_invalid_grant: refresh token and code still work",
          sim.refresh(g["refresh_token"]).status == 200 and sim.exchange(code).status == 200)
    fault(target="api", mode="http_400_invalid_grant")
    r = sim.me(g["access_token"])
    check("fault http_400_invalid_grant on api: 400 HAL", r.status == 400
          and r.json()["status"] == 400, r.body)

    # grant_type restriction.
    fault(target="token", mode="http_503", count=-1, grant_type="refresh_token")
    check("grant_type refresh_token: code exchange unaffected",
          sim.exchange(sim.code(sim_org="org_fault2")).status == 200)
    check("grant_type refresh_token: revocation unaffected",
          sim.tokens({"token_type_hint": "access_token", "token": "access_x"},
                     method="DELETE").status == 204)
    check("grant_type refresh_token: refresh faulted",
          sim.refresh(g["refresh_token"]).status == 503)
    fault(target="token", mode="http_500", count=1, grant_type="authorization_code")
    listed = sim.control("GET", "faults")["faults"]
    check("restricted faults of both grant types coexist",
          sorted((f["grant_type"], f["mode"]) for f in listed)
          == [("authorization_code", "http_500"), ("refresh_token", "http_503")], listed)
    check("grant_type authorization_code: code exchange faulted",
          sim.exchange(sim.code(sim_org="org_fault2")).status == 500)
    fault(target="token", mode="http_429", count=1)
    listed = sim.control("GET", "faults")["faults"]
    check("an unrestricted token fault replaces the restricted ones",
          len(listed) == 1 and listed[0]["grant_type"] == "" and listed[0]["mode"] == "http_429",
          listed)
    fault(target="token", mode="none")
    check("bad grant_type: 400", control_error(sim, "POST", "faults", {
        "target": "token", "mode": "http_500", "grant_type": "password"}) == 400)
    check("grant_type without target token: 400", control_error(sim, "POST", "faults", {
        "target": "api", "mode": "http_500", "grant_type": "refresh_token"}) == 400)
    check("delay_ms over 600000: 400", control_error(sim, "POST", "faults", {
        "target": "token", "mode": "delay", "delay_ms": 600001}) == 400)

    # delay: answered normally, late.
    r0 = fault(target="token", mode="delay", delay_ms=600, count=1)
    check("delay fault listed with delay_ms", r0["faults"][0]["delay_ms"] == 600, r0)
    started = time.monotonic()
    r = sim.refresh(g["refresh_token"])
    elapsed = time.monotonic() - started
    check("fault delay on token: 200 after >= 600 ms", r.status == 200 and elapsed >= 0.6,
          (r.status, elapsed))
    check("fault delay: the tokens are real", sim.me(r.json()["access_token"]).status == 200)
    fault(target="api", mode="delay", delay_ms=400)
    started = time.monotonic()
    r = sim.me(g["access_token"])
    check("fault delay on api: 200 after >= 400 ms",
          r.status == 200 and time.monotonic() - started >= 0.4)
    r0 = fault(target="api", mode="delay")
    check("delay_ms defaults to 1000", r0["faults"][0]["delay_ms"] == 1000, r0)
    fault(target="api", mode="none")

    # reply_then_drop with rotation: the reply is lost, the state changed, replay recovers.
    sim.control("POST", "config", {"rotate_refresh_tokens": True})
    h = sim.grant(sim_org="org_drop")
    fault(target="token", mode="reply_then_drop", count=1, grant_type="refresh_token")
    check("fault reply_then_drop: no response",
          transport_failure(lambda: sim.refresh(h["refresh_token"])))
    tokens = refresh_tokens_of(sim, "org_drop")
    check("reply_then_drop: the refresh happened (R2 issued, R1 replayable)",
          len(tokens) == 2 and tokens[0]["replayable"] is True and tokens[1]["valid"] is True,
          tokens)
    r = sim.refresh(h["refresh_token"])
    check("reply_then_drop then retry with R1: the R2 that was lost",
          r.status == 200 and r.json()["refresh_token"] == tokens[1]["token"], r.body)
    sim.control("POST", "config", {"rotate_refresh_tokens": False})
    code = sim.code(sim_org="org_drop2")
    fault(target="token", mode="reply_then_drop", count=1)
    check("reply_then_drop on code exchange: no response",
          transport_failure(lambda: sim.exchange(code)))
    check("reply_then_drop: the code was consumed", sim.exchange(code).status == 400)
    check("reply_then_drop: a grant was created", len(refresh_tokens_of(sim, "org_drop2")) == 1)
    fault(target="api", mode="reply_then_drop", count=1)
    check("reply_then_drop on api: no response",
          transport_failure(lambda: sim.me(g["access_token"])))

    # Concurrency: in flight and the peak, with delayed requests on three threads.
    sim.control("POST", "stats/reset")
    fault(target="token", mode="delay", delay_ms=1200, count=3, grant_type="refresh_token")
    results = []

    def worker():
        try:
            results.append(sim.refresh(g["refresh_token"], ).status)
        except Exception as e:  # recorded, checked below
            results.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    in_flight = wait_for(lambda: sim.control("GET", "stats")["token_requests_in_flight"] == 3,
                         5, "three token requests in flight")
    for t in threads:
        t.join(10)
    stats = sim.control("GET", "stats")
    check("three delayed refreshes in flight at once", in_flight and results == [200] * 3,
          results)
    check("stats: max_concurrent_token_requests 3, in flight back to 0",
          stats["max_concurrent_token_requests"] == 3
          and stats["token_requests_in_flight"] == 0, stats)
    sim.control("POST", "stats/reset")
    sim.refresh(g["refresh_token"])
    check("after stats/reset, sequential requests peak at 1",
          sim.control("GET", "stats")["max_concurrent_token_requests"] == 1)


def test_token_log_and_stats(sim):
    g = sim.grant(sim_org="org_log")
    r = sim.control("POST", "token_log/clear")
    check("token_log/clear answers the count", r["cleared"] >= 1, r)
    check("token_log empty after clear", sim.control("GET", "token_log") == {"entries": []})
    stats0 = sim.control("GET", "stats")
    t0 = sim.control("GET", "clock")["now_ms"]

    code = sim.code(sim_org="org_log")
    sim.exchange(code)                                            # 200 authorization_code
    sim.refresh(g["refresh_token"])                               # 200
    sim.refresh(g["refresh_token"], redirect_uri="https://x/y")   # 400 (redirect mismatch)
    sim.refresh("refresh_" + "q" * 30)                            # 400, unknown org
    sim.control("POST", "faults", {"target": "token", "mode": "http_503"})
    sim.refresh(g["refresh_token"])                               # 503 fault
    sim.control("POST", "faults", {"target": "token", "mode": "reset"})
    try:
        sim.refresh(g["refresh_token"])                           # reset: no status
    except (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError):
        pass
    sim.tokens({"grant_type": "client_credentials"})              # 400 unsupported
    sim.tokens({"token_type_hint": "access_token", "token": "access_x"}, method="DELETE")

    entries = sim.control("GET", "token_log")["entries"]
    t1 = sim.control("GET", "clock")["now_ms"]
    got = [(e["grant_type"], e["organization_id"], e["status"], e["fault"]) for e in entries]
    want = [("authorization_code", "org_log", 200, "none"),
            ("refresh_token", "org_log", 200, "none"),
            ("refresh_token", "org_log", 400, "none"),
            ("refresh_token", "", 400, "none"),
            ("refresh_token", "org_log", 503, "http_503"),
            ("refresh_token", "org_log", 0, "reset"),
            ("client_credentials", "", 400, "none")]
    check("token_log: every POST /oauth2/tokens, oldest first, no DELETE", got == want, got)
    times = [e["time_ms"] for e in entries]
    check("token_log: time_ms ordered, within the test's window",
          times == sorted(times) and t0 <= times[0] and times[-1] <= t1, (t0, times, t1))
    check("token_log entries have exactly the documented fields",
          all(list(e) == ["time_ms", "grant_type", "organization_id", "status", "fault"]
              for e in entries))

    stats = sim.control("GET", "stats")
    check("stats: refresh_attempts_by_organization counts failed and faulted refreshes",
          stats["refresh_attempts_by_organization"].get("org_log", 0)
          - stats0["refresh_attempts_by_organization"].get("org_log", 0) == 4
          and stats["refresh_attempts"] - stats0["refresh_attempts"] == 5, stats)
    check("stats: refreshes_by_organization still counts successes only",
          stats["refreshes_by_organization"]["org_log"]
          - stats0["refreshes_by_organization"].get("org_log", 0) == 1, stats)
    check("stats: new fields present", all(
        k in stats for k in ("max_concurrent_token_requests", "token_requests_in_flight",
                             "refresh_replays")) and stats["token_requests_in_flight"] == 0,
          stats)
    check("unknown control endpoint: 404",
          control_error(sim, "GET", "token_log/nope", None) == 404)
    check("GET on token_log/clear: 405", control_error(sim, "GET", "token_log/clear", None) == 405)


def test_bulk_grants(sim):
    started = time.monotonic()
    r = sim.control("POST", "grants", {"count": 20000, "scopes": "organizations.read payments.read"})
    elapsed = time.monotonic() - started
    grants = r["grants"]
    ids = [x["organization_id"] for x in grants]
    check("bulk: 20000 grants quickly", len(grants) == 20000 and elapsed < 20, elapsed)
    check("bulk: unique org_<number> ids, names, refresh tokens",
          len(set(ids)) == 20000 and all(re.fullmatch(r"org_\d+", i) for i in ids)
          and all(x["name"] == "Merchant " + x["organization_id"][4:] for x in grants)
          and len({x["refresh_token"] for x in grants}) == 20000
          and all(TOKEN_RE["refresh_"].match(x["refresh_token"]) for x in grants[:100]))
    check("bulk: exactly the three fields",
          list(grants[0]) == ["organization_id", "name", "refresh_token"], grants[0])
    sample = grants[12345]
    r = sim.refresh(sample["refresh_token"])
    check("bulk: redirect_uri defaults to the registered one (refresh needs it)",
          r.status == 400 and r.json()["error"] == "invalid_request", r.body)
    r = sim.refresh(sample["refresh_token"], redirect_uri=REDIRECT)
    check("bulk: refresh works", r.status == 200
          and r.json()["refresh_token"] == sample["refresh_token"]
          and r.json()["scope"] == "organizations.read payments.read", r.body)
    me = sim.me(r.json()["access_token"])
    check("bulk: the organization is real", me.status == 200
          and me.json()["id"] == sample["organization_id"], me.body)

    r = sim.control("POST", "grants", {"count": 3, "scopes": "payments.read organizations.read",
                                       "redirect_uri": "", "org_prefix": "org_bulk_"})
    ids = [x["organization_id"] for x in r["grants"]]
    check("bulk: org_prefix", len(ids) == 3 and all(re.fullmatch(r"org_bulk_\d+", i)
                                                   for i in ids), ids)
    r = sim.refresh(r["grants"][0]["refresh_token"])
    check("bulk: redirect_uri \"\" = exchanged without one", r.status == 200
          and r.json()["scope"] == "payments.read organizations.read", r.body)
    for name, payload in (("count over 20000", {"count": 20001, "scopes": "payments.read"}),
                          ("missing count", {"scopes": "payments.read"}),
                          ("negative count", {"count": -1, "scopes": "payments.read"}),
                          ("missing scopes", {"count": 1}),
                          ("unknown scope", {"count": 1, "scopes": "payments.readx"}),
                          ("bad org_prefix", {"count": 1, "scopes": "payments.read",
                                              "org_prefix": "bulk_"})):
        check(f"bulk: {name}: 400", control_error(sim, "POST", "grants", payload) == 400)
    check("bulk: count 0", sim.control("POST", "grants", {"count": 0, "scopes":
                                                          "payments.read"}) == {"grants": []})


def start_delayed_request(sim):
    """A token request delayed for 30 s, left pending: shutdown must interrupt the delay."""
    before = sim.control("GET", "stats")["token_requests_in_flight"]  # the hanging one: 1
    sim.control("POST", "faults", {"target": "token", "mode": "delay", "delay_ms": 30000})
    conn = sim.connection(timeout=0.5)
    timed_out = False
    try:
        sim.call("POST", "/oauth2/tokens", "grant_type=refresh_token", conn=conn)
    except (socket.timeout, TimeoutError):
        timed_out = True
    check("fault delay 30 s: still pending after 0.5 s", timed_out)
    check("delayed (and hanging) requests count as in flight",
          before == 1 and sim.control("GET", "stats")["token_requests_in_flight"] == 2, before)
    return conn


def test_clock(sim):
    c0 = sim.control("GET", "clock")
    check("clock: starts without offset", c0["offset_seconds"] == 0
          and abs(c0["now_ms"] - time.time() * 1000) < 60000, c0)
    g = sim.grant(sim_org="org_clock")
    code = sim.code(sim_org="org_clock")
    access, _, _ = sim.truth()
    check("clock: new access token valid", access[g["access_token"]]["valid"] is True)
    c1 = sim.control("POST", "clock", {"advance_seconds": 3601})
    check("clock: advance 3601 s", c1["offset_seconds"] == 3601
          and c1["now_ms"] - c0["now_ms"] >= 3601 * 1000, c1)
    access, _, t = sim.truth()
    check("clock: truth now_ms moved and the access token is invalid",
          t["now_ms"] >= c1["now_ms"] and access[g["access_token"]]["valid"] is False
          and access[g["access_token"]]["expires_at_ms"] <= t["now_ms"])
    check("clock: the API rejects the expired access token", sim.me(g["access_token"]).status
          == 401)
    check("clock: the code expired", sim.exchange(code).status == 400)
    r = sim.refresh(g["refresh_token"])
    check("clock: refresh gives a token valid on the shifted clock", r.status == 200
          and sim.me(r.json()["access_token"]).status == 200)
    access, _, t = sim.truth()
    check("clock: expires_at_ms on the shifted clock",
          access[r.json()["access_token"]]["expires_at_ms"] >= c1["now_ms"] + 3599 * 1000)
    c2 = sim.control("POST", "clock", {"advance_seconds": 10})
    check("clock: advances add up", c2["offset_seconds"] == 3611, c2)
    check("clock: GET reports the offset", sim.control("GET", "clock")["offset_seconds"] == 3611)
    check("clock: negative advance: 400",
          control_error(sim, "POST", "clock", {"advance_seconds": -1}) == 400)
    check("clock: non-integer advance: 400",
          control_error(sim, "POST", "clock", {"advance_seconds": "1h"}) == 400)


def is_json(data):
    try:
        json.loads(data)
        return True
    except ValueError:
        return False


def test_second_instance(binary, ca_dir, workdir):
    secret_file = os.path.join(workdir, "secret")
    with open(secret_file, "w") as f:
        f.write("file_secret\n")
    sim = Sim(binary, ca_dir, workdir, "sim2",
              ["--client-id", "app_second", "--client-secret-file", secret_file,
               "--rotate-refresh-tokens", "--access-token-ttl", "0", "--code-ttl", "30"])
    try:
        cfg = sim.control("GET", "config")
        check("flags reach config", cfg["rotate_refresh_tokens"] is True
              and cfg["access_token_ttl_seconds"] == 0 and cfg["client_id"] == "app_second"
              and cfg["redirect_uri"] == "", cfg)
        r = sim.authorize(client_id="app_second", state="s", scope="organizations.read",
                          response_type="code")
        check("no registered redirect URI and none given: 400", r.status == 400)
        r = sim.authorize(client_id="app_second", state="s", scope="organizations.read",
                          response_type="code", redirect_uri="http://127.0.0.1:9/cb")
        _, q = location_params(r)
        code = q["code"][0]
        r = sim.exchange(code, client="app_second", secret="file_secret",
                         redirect_uri="http://127.0.0.1:9/cb")
        check("secret from file works", r.status == 200, r.body)
        g = r.json()
        check("--access-token-ttl 0", g["expires_in"] == 0 and sim.me(g["access_token"]).status
              == 401)
        r = sim.refresh(g["refresh_token"], client="app_second", secret="file_secret",
                        redirect_uri="http://127.0.0.1:9/cb")
        check("--rotate-refresh-tokens", r.status == 200
              and r.json()["refresh_token"] != g["refresh_token"], r.body)
    finally:
        check("second instance stops cleanly", sim.stop() == 0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sim", required=True)
    parser.add_argument("--gen-ca", required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mollie-sim-test.") as workdir:
        ca_dir = os.path.join(workdir, "ca")
        subprocess.run([args.gen_ca, ca_dir], check=True, timeout=60)
        before = os.stat(os.path.join(ca_dir, "server.pem")).st_mtime_ns
        subprocess.run([args.gen_ca, ca_dir], check=True, timeout=60)
        check("gen-test-ca is idempotent",
              os.stat(os.path.join(ca_dir, "server.pem")).st_mtime_ns == before)
        check("gen-test-ca: CA and server files", all(
            os.path.getsize(os.path.join(ca_dir, f)) > 0
            for f in ("ca.pem", "ca.key", "server.pem", "server.key")))

        test_flags(args.sim, ca_dir, workdir)
        sim = Sim(args.sim, ca_dir, workdir, "sim",
                  ["--client-id", CLIENT_ID, "--client-secret", SECRET,
                   "--redirect-uri", REDIRECT])
        hanging = None
        delayed = None
        truth = ({}, {}, {})
        try:
            fixtures_ok = check("fixtures readable", os.path.isdir(TESTDATA), TESTDATA)
            for name, fn in (("authorize", lambda: test_authorize(sim)),
                             ("code flow", lambda: test_code_flow(sim, fixtures_ok)),
                             ("revoke", lambda: test_revoke(sim)),
                             ("force", lambda: test_force(sim)),
                             ("api", lambda: test_api(sim)),
                             ("rotation replay", lambda: test_rotation_replay(sim)),
                             ("token log and stats", lambda: test_token_log_and_stats(sim)),
                             ("bulk grants", lambda: test_bulk_grants(sim)),
                             ("new faults", lambda: test_new_faults(sim)),
                             ("clock", lambda: test_clock(sim))):
                try:
                    fn()
                except Exception as e:  # a crash in one group must not hide the others
                    check(f"{name} group ran", False, repr(e))
            truth = sim.truth()
            try:
                hanging = test_faults(sim)
                delayed = start_delayed_request(sim)
            except Exception as e:
                check("faults group ran", False, repr(e))
        finally:
            started = time.monotonic()
            rc = sim.stop()
            check("SIGTERM with a hanging and a delayed request: exit 0 within 5 s",
                  rc == 0 and time.monotonic() - started < 5, rc)
            for conn in (hanging, delayed):
                if conn is not None:
                    conn.close()
        with open(sim.log_path) as f:
            log = f.read()
        secrets = [SECRET] + list(truth[0]) + list(truth[1])
        check("log has request lines", "POST /oauth2/tokens 200" in log
              and "GET /v2/organizations/me 401" in log)
        check("log shows no token or secret", not any(s in log for s in secrets)
              and "auth_" not in log)
        test_second_instance(args.sim, ca_dir, workdir)

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
