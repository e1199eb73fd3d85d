"""Test harness: runs the real mollie-sim and the real connect-brokerd as processes.

Paths come from the environment (set by CMake/ctest): CONNECT_BROKERD, MOLLIE_SIM,
CONNECT_BROKER_CLI, CB_PY_STUBS, CB_GEN_CA. Every wait is a condition polled against a deadline.
"""
import atexit
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import http.client

sys.path.insert(0, os.environ.get("CB_PY_STUBS", ""))
import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402
from connectbroker.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402
from connectbroker.v1 import merchant_pb2  # noqa: E402
from connectbroker.v1 import onboarding_pb2, onboarding_pb2_grpc  # noqa: E402
from connectbroker.v1 import proxy_pb2, proxy_pb2_grpc  # noqa: E402
from connectbroker.v1 import token_pb2, token_pb2_grpc  # noqa: E402

BROKERD = os.environ.get("CONNECT_BROKERD", "")
SIM = os.environ.get("MOLLIE_SIM", "")
CLI = os.environ.get("CONNECT_BROKER_CLI", "")
GEN_CA = os.environ.get("CB_GEN_CA", "")

REDIRECT_URI = "https://platform.example/oauth/callback"
CLIENT_ID = "app_integrationtest"


def wait_for(predicate, timeout=20.0, interval=0.05, what="condition"):
    """Polls predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def read_ports(path):
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    if not text.endswith("\n"):
        return None
    return text


class Env:
    """One simulator + one daemon in a private temp directory."""

    def __init__(self, sim_args=(), config_extra=None, state_ttl=None):
        self.dir = tempfile.mkdtemp(prefix="cb-it-")
        # A test whose setUpClass fails never reaches tearDownClass: stop our processes anyway.
        self.closed = False
        atexit.register(self.close)
        self.ca_dir = os.path.join(self.dir, "ca")
        subprocess.run([GEN_CA, self.ca_dir], check=True, capture_output=True)
        self.ssl = ssl.create_default_context(cafile=os.path.join(self.ca_dir, "ca.pem"))
        self.client_secret = "secret_" + secrets.token_hex(8)
        self.secret_file = os.path.join(self.dir, "client_secret")
        with open(self.secret_file, "w") as f:
            f.write(self.client_secret + "\n")
        self.key_file = os.path.join(self.dir, "keys")
        with open(self.key_file, "w") as f:
            f.write("k1 " + secrets.token_hex(32) + "\n")
        self.data_dir = os.path.join(self.dir, "data")
        self.sim = None
        self.daemon = None
        self.sim_port = None
        self.grpc_port = None
        self.http_port = None
        self.daemon_log = os.path.join(self.dir, "daemon.log")
        self.sim_log = os.path.join(self.dir, "sim.log")
        self.config_extra = config_extra or {}
        self.start_sim(*sim_args)

    # --- simulator ---------------------------------------------------------------------------
    def start_sim(self, *extra):
        port_file = os.path.join(self.dir, "sim.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        args = [SIM, "--listen", "127.0.0.1:0", "--port-file", port_file,
                "--cert", os.path.join(self.ca_dir, "server.pem"),
                "--key", os.path.join(self.ca_dir, "server.key"),
                "--client-id", CLIENT_ID, "--client-secret-file", self.secret_file,
                "--redirect-uri", REDIRECT_URI, *extra]
        self.sim = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                    stderr=open(self.sim_log, "ab"))
        text = wait_for(lambda: read_ports(port_file), what="simulator port file")
        self.sim_port = int(text.strip())

    def sim_url(self, path):
        return f"https://127.0.0.1:{self.sim_port}{path}"

    def sim_request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.sim_url(path), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ssl, timeout=10) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def truth(self):
        return self.sim_request("GET", "/_sim/truth")

    def stats(self):
        return self.sim_request("GET", "/_sim/stats")

    def fault(self, mode, count=1, target="token", retry_after=None):
        body = {"target": target, "mode": mode, "count": count}
        if retry_after is not None:
            body["retry_after_seconds"] = retry_after
        return self.sim_request("POST", "/_sim/faults", body)

    def valid_access_tokens(self):
        return {t["token"] for t in self.truth()["access_tokens"] if t["valid"]}

    def all_issued_tokens(self):
        t = self.truth()
        return [x["token"] for x in t["access_tokens"]] + [x["token"] for x in t["refresh_tokens"]]

    # --- daemon ------------------------------------------------------------------------------
    def write_config(self, **overrides):
        sections = {
            "server": {"grpc_listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0",
                       "shutdown_grace_seconds": 5},
            "mollie": {"authorize_base_url": f"https://127.0.0.1:{self.sim_port}",
                       "api_base_url": f"https://127.0.0.1:{self.sim_port}",
                       "ca_file": os.path.join(self.ca_dir, "ca.pem"),
                       "client_id": CLIENT_ID, "client_secret_file": self.secret_file,
                       "redirect_uri": REDIRECT_URI, "request_timeout_ms": 5000},
            "storage": {"data_dir": self.data_dir, "key_file": self.key_file},
            "refresh": {"min_serve_ttl_seconds": 1, "backoff_initial_ms": 200,
                        "backoff_max_ms": 2000},
            "onboarding": {},
        }
        for section, values in self.config_extra.items():
            sections.setdefault(section, {}).update(values)
        for section, values in overrides.items():
            sections.setdefault(section, {}).update(values)
        lines = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            for k, v in values.items():
                lines.append(f"{k} = {json.dumps(v)}")
        path = os.path.join(self.dir, "connect-brokerd.toml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start_daemon(self, config_path=None, expect_ready=True, extra_args=()):
        config_path = config_path or self.write_config()
        ports_file = os.path.join(self.dir, "daemon.ports")
        if os.path.exists(ports_file):
            os.unlink(ports_file)
        log = open(self.daemon_log, "ab")
        self.daemon = subprocess.Popen([BROKERD, "--config", config_path,
                                        "--ports-file", ports_file, *extra_args],
                                       stdout=log, stderr=log)
        if not expect_ready:
            return self.daemon
        def ready():
            if self.daemon.poll() is not None:
                raise AssertionError(f"daemon exited with {self.daemon.returncode}:\n"
                                     + self.read_daemon_log()[-3000:])
            return read_ports(ports_file)
        text = wait_for(ready, what="daemon ports file")
        ports = dict(line.split("=") for line in text.split())
        self.grpc_port = int(ports["grpc"])
        self.http_port = int(ports["http"])
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.tokens = token_pb2_grpc.TokenServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.onboarding = onboarding_pb2_grpc.OnboardingServiceStub(self.channel)
        self.proxy = proxy_pb2_grpc.ProxyServiceStub(self.channel)
        return self.daemon

    def stop_daemon(self, sig=signal.SIGTERM, timeout=20):
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(sig)
        try:
            rc = self.daemon.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            rc = self.daemon.wait()
            raise AssertionError("daemon did not stop within %ss" % timeout)
        finally:
            if getattr(self, "channel", None) is not None:
                self.channel.close()
                self.channel = None
        self.daemon = None
        return rc

    def read_daemon_log(self):
        with open(self.daemon_log, "rb") as f:
            return f.read().decode(errors="replace")

    # --- onboarding through the real authorization-code flow ---------------------------------
    def begin(self, account_ref="", scopes=(), **kw):
        return self.onboarding.BeginAuthorization(onboarding_pb2.BeginAuthorizationRequest(
            account_ref=account_ref, scopes=list(scopes), **kw), timeout=10)

    def consent(self, authorize_url, org=None, name=None, decision="approve"):
        """The merchant's browser on Mollie's consent screen; returns the redirect's query."""
        extra = {"sim_decision": decision}
        if org:
            extra["sim_org"] = org
        if name:
            extra["sim_name"] = name
        url = authorize_url + "&" + urllib.parse.urlencode(extra)
        parsed = urllib.parse.urlsplit(url)
        conn = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=self.ssl,
                                           timeout=10)
        conn.request("GET", parsed.path + "?" + parsed.query)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.status in (301, 302, 303), f"consent answered {resp.status}"
        location = resp.getheader("Location")
        assert location.startswith(REDIRECT_URI), location
        return urllib.parse.urlsplit(location).query

    def callback(self, query):
        """The platform's reverse proxy forwarding Mollie's redirect to the broker."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=20)
        conn.request("GET", "/oauth/callback?" + query)
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        return resp.status, body

    def http_get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        return resp.status, body

    def onboard(self, org, name=None, account_ref="", scopes=(), **kw):
        begin = self.begin(account_ref=account_ref, scopes=scopes, **kw)
        query = self.consent(begin.authorize_url, org=org, name=name or f"Shop {org}")
        status, body = self.callback(query)
        assert status == 200, f"callback answered {status}: {body}"
        return self.admin.GetMerchant(admin_pb2.GetMerchantRequest(organization_id=org),
                                      timeout=10)

    def token(self, org=None, account_ref=None, min_ttl=None, timeout=10):
        req = token_pb2.GetAccessTokenRequest()
        if org is not None:
            req.organization_id = org
        if account_ref is not None:
            req.account_ref = account_ref
        if min_ttl is not None:
            req.min_ttl.CopyFrom(duration_pb2.Duration(seconds=min_ttl))
        return self.tokens.GetAccessToken(req, timeout=timeout)

    def merchant(self, org):
        return self.admin.GetMerchant(admin_pb2.GetMerchantRequest(organization_id=org),
                                      timeout=10)

    def merchants(self, status=0):
        out = []
        token = ""
        while True:
            resp = self.admin.ListMerchants(admin_pb2.ListMerchantsRequest(
                page_size=100, page_token=token, status=status), timeout=10)
            out.extend(resp.merchants)
            token = resp.next_page_token
            if not token:
                return out

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            if self.daemon is not None and self.daemon.poll() is None:
                self.daemon.kill()
                self.daemon.wait()
        finally:
            if self.sim is not None and self.sim.poll() is None:
                self.sim.terminate()
                try:
                    self.sim.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.sim.kill()
                    self.sim.wait()
            if os.environ.get("CB_KEEP_TEST_DIRS"):
                print("kept", self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)


def files_containing(root, needles):
    """(path, needle) pairs for every file under root holding one of the needles' bytes."""
    hits = []
    encoded = [(n, n.encode()) for n in needles if n]
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for n, b in encoded:
                if b in data:
                    hits.append((path, n))
    return hits


ACTIVE = merchant_pb2.GRANT_STATUS_ACTIVE
REFRESH_FAILING = merchant_pb2.GRANT_STATUS_REFRESH_FAILING
NEEDS_REAUTHORIZATION = merchant_pb2.GRANT_STATUS_NEEDS_REAUTHORIZATION
