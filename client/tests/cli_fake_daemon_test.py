#!/usr/bin/python3
"""The connect-broker CLI and the Python example library against a fake daemon.

The fake daemon is a set of Python gRPC servicers on 127.0.0.1:0 that answer from fixed data
and record the requests. It checks the client side only (output, flags -> request fields, exit
codes, error format); the real daemon's behaviour is covered by tests/integration.

Usage: cli_fake_daemon_test.py PATH/TO/connect-broker PATH/TO/build/python
"""
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import time
import unittest

CLI = sys.argv.pop(1) if __name__ == "__main__" else None
STUBS = sys.argv.pop(1) if __name__ == "__main__" else None
os.environ["CONNECT_BROKER_PY_STUBS"] = STUBS or ""
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import grpc  # noqa: E402
import connectbroker_client as cbc  # noqa: E402
from connectbroker.v1 import admin_pb2, admin_pb2_grpc, merchant_pb2  # noqa: E402
from connectbroker.v1 import onboarding_pb2, onboarding_pb2_grpc  # noqa: E402
from connectbroker.v1 import proxy_pb2, proxy_pb2_grpc  # noqa: E402
from connectbroker.v1 import token_pb2, token_pb2_grpc  # noqa: E402

TOKEN = "access_SeCrEtToKeN0123456789"
NOW = int(time.time())


def merchant(i, status=merchant_pb2.GRANT_STATUS_ACTIVE):
    m = merchant_pb2.Merchant(organization_id="org_%d" % i, organization_name="Shop %d" % i,
                              account_ref="acct-%d" % i, scopes=["payments.read"],
                              status=status, last_refresh_outcome="ok", refresh_count=i)
    m.access_token_expires_at.seconds = NOW + 3600
    m.last_refresh_at.seconds = NOW - 60
    return m


MERCHANTS = [merchant(1), merchant(2, merchant_pb2.GRANT_STATUS_REVOKED), merchant(3)]


class Recorder:
    def __init__(self):
        self.requests = []


class FakeAdmin(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, rec):
        self.rec = rec

    def ListMerchants(self, request, context):
        self.rec.requests.append(request)
        selected = [m for m in MERCHANTS if request.status in (0, m.status)]
        start = int(request.page_token or 0)
        page = selected[start:start + 2]
        next_token = str(start + 2) if start + 2 < len(selected) else ""
        return admin_pb2.ListMerchantsResponse(merchants=page, next_page_token=next_token)

    def GetMerchant(self, request, context):
        for m in MERCHANTS:
            if m.organization_id == request.organization_id:
                return m
        context.abort(grpc.StatusCode.NOT_FOUND, "unknown organization " + request.organization_id)

    def RefreshMerchant(self, request, context):
        m = merchant_pb2.Merchant()
        m.CopyFrom(MERCHANTS[0])
        m.refresh_count += 1
        return m


class FakeToken(token_pb2_grpc.TokenServiceServicer):
    def __init__(self, rec):
        self.rec = rec

    def GetAccessToken(self, request, context):
        self.rec.requests.append(request)
        org = request.organization_id or ("org_for_" + request.account_ref)
        if org == "org_gone":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "grant needs reauthorization")
        if org == "org_busy":
            context.abort(grpc.StatusCode.UNAVAILABLE, "Mollie cannot be reached right now")
        if org == "org_slow":
            time.sleep(3)  # longer than the caller's --timeout
        r = token_pb2.GetAccessTokenResponse(access_token=TOKEN, scopes=["payments.read"],
                                             organization_id=org, generation=4)
        r.expires_at.seconds = NOW + 3600
        return r


class FakeOnboarding(onboarding_pb2_grpc.OnboardingServiceServicer):
    def __init__(self, rec):
        self.rec = rec

    def BeginAuthorization(self, request, context):
        self.rec.requests.append(request)
        r = onboarding_pb2.BeginAuthorizationResponse(
            authorize_url="https://my.mollie.com/oauth2/authorize?state=st_1&scope=" +
            "+".join(request.scopes), state="st_1")
        r.expires_at.seconds = NOW + 600
        return r

    def CompleteAuthorization(self, request, context):
        if request.code != "auth_good":
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown, expired or reused state")
        return onboarding_pb2.CompleteAuthorizationResponse(merchant=MERCHANTS[2])


# Odd spacing and no final newline: the CLI must print a body byte for byte.
PROFILES = (b'{"count":1,  "_embedded":{"profiles":[{"resource":"profile","id":"pfl_7",'
            b'"name":"Caf\xc3\xa9"}]},"_links":{}}')
PAYMENT = b'{"resource":"payment","id":"tr_fake1","mode":"test","status":"open"}'
NOT_FOUND_BODY = (b'{"status":404,"title":"Not Found","detail":"No payment exists with token '
                  b'tr_missing.","_links":{"documentation":{"href":"https://docs.mollie.com"}}}')
HAL = proxy_pb2.HttpHeader(name="Content-Type", value="application/hal+json")


class FakeProxy(proxy_pb2_grpc.ProxyServiceServicer):
    """Answers like the broker would, from the path; records every request."""

    def __init__(self, rec):
        self.rec = rec

    def Call(self, request, context):
        self.rec.requests.append(request)
        org = request.organization_id or request.account_ref
        if org == "org_404404":
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown merchant org_404404")
        if org == "org_gone":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "merchant org_gone must reauthorize")
        path = request.path
        if path == "/v2/slow":
            time.sleep(3)  # longer than the caller's --timeout
        if path == "/v2/refused":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "header Cookie is not allowed")
        if path == "/v2/profiles":
            return proxy_pb2.ProxyResponse(status=200, headers=[HAL], body=PROFILES, attempts=1)
        if path == "/v2/payments" and request.method == "POST" and org == "org_422":
            return proxy_pb2.ProxyResponse(
                status=422, headers=[HAL], attempts=1,
                body=b'{"status":422,"title":"Unprocessable Entity","detail":"The amount is '
                     b'lower than the minimum","field":"amount"}')
        if path == "/v2/payments" and request.method == "POST":
            return proxy_pb2.ProxyResponse(
                status=201, body=PAYMENT, attempts=1, headers=[
                    HAL, proxy_pb2.HttpHeader(name="Location",
                                              value="https://api.mollie.com/v2/payments/tr_fake1")])
        if path == "/v2/payments/tr_missing":
            return proxy_pb2.ProxyResponse(status=404, headers=[HAL], body=NOT_FOUND_BODY,
                                           attempts=1)
        if path == "/v2/payments/tr_gone" and request.method == "DELETE":
            return proxy_pb2.ProxyResponse(status=204, attempts=2, token_refreshed=True)
        return proxy_pb2.ProxyResponse(status=500, body=b"<html>oops</html>", attempts=3)

    def CallPaged(self, request, context):
        self.rec.requests.append(request)
        if request.organization_id == "org_404404":
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown merchant org_404404")
        ids = ["tr_%d" % i for i in range(1, 6)]
        if request.max_items:
            ids = ids[:request.max_items]
        for number, start in enumerate(range(0, len(ids), 2), 1):
            if request.path == "/v2/limited" and number == 2:
                yield proxy_pb2.ProxyPage(
                    status=429, page_number=2, headers=[proxy_pb2.HttpHeader(
                        name="Retry-After", value="7")],
                    body=b'{"status":429,"title":"Too Many Requests","detail":"Slow down"}')
                return
            items = [json.dumps({"resource": "payment", "id": i}, indent=1).encode()
                     if i == "tr_2" else ('{"resource":"payment","id":"%s"}' % i).encode()
                     for i in ids[start:start + 2]]
            yield proxy_pb2.ProxyPage(status=200, headers=[HAL], items=items,
                                      embedded_key="payments", page_number=number)
            if request.path == "/v2/broken":
                context.abort(grpc.StatusCode.INTERNAL, "page 2 is not a HAL list")


class FakeDaemonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rec = Recorder()
        cls.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        admin_pb2_grpc.add_AdminServiceServicer_to_server(FakeAdmin(cls.rec), cls.server)
        token_pb2_grpc.add_TokenServiceServicer_to_server(FakeToken(cls.rec), cls.server)
        onboarding_pb2_grpc.add_OnboardingServiceServicer_to_server(FakeOnboarding(cls.rec),
                                                                   cls.server)
        proxy_pb2_grpc.add_ProxyServiceServicer_to_server(FakeProxy(cls.rec), cls.server)
        port = cls.server.add_insecure_port("127.0.0.1:0")
        cls.server.start()
        cls.address = "127.0.0.1:%d" % port

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(grace=None)

    def setUp(self):
        self.rec.requests.clear()

    def cli(self, *args):
        env = dict(os.environ, CONNECT_BROKER_ADDRESS=self.address)
        p = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=30, env=env)
        return p.returncode, p.stdout, p.stderr

    def cli_bytes(self, *args, input=None):
        env = dict(os.environ, CONNECT_BROKER_ADDRESS=self.address)
        p = subprocess.run([CLI, *args], capture_output=True, timeout=30, env=env, input=input)
        return p.returncode, p.stdout, p.stderr.decode()

    # --- connect-broker (C++ CLI) ---

    def test_merchants_table_follows_pages(self):
        rc, out, err = self.cli("merchants")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["ORGANIZATION", "NAME", "ACCOUNT_REF", "STATUS",
                                            "EXPIRES_IN", "REFRESHES", "LAST_REFRESH"])
        self.assertEqual(len(lines), 4)
        self.assertEqual(lines[1].split()[:3], ["org_1", "Shop", "1"])
        self.assertIn("revoked", lines[2])
        self.assertRegex(lines[1], r"  (59m|1h)  ")
        self.assertEqual(len(self.rec.requests), 2)

    def test_merchants_json_status_and_limit(self):
        rc, out, err = self.cli("merchants", "--json", "--status", "active", "--limit", "1")
        self.assertEqual(rc, 0, err)
        data = json.loads(out)
        self.assertEqual(len(data), 1)
        self.assertEqual(data[0]["organization_id"], "org_1")
        self.assertEqual(data[0]["status"], "GRANT_STATUS_ACTIVE")
        self.assertIn("access_token_expires_at", data[0])
        self.assertEqual(self.rec.requests[0].status, merchant_pb2.GRANT_STATUS_ACTIVE)
        self.assertEqual(self.rec.requests[0].page_size, 1)

    def test_merchant_details_and_not_found(self):
        rc, out, err = self.cli("merchant", "org_3")
        self.assertEqual(rc, 0, err)
        self.assertIn("organization_id:          org_3\n", out)
        self.assertIn("status:                   active\n", out)
        rc, out, err = self.cli("merchant", "org_404")
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertEqual(err, "connect-broker: merchant: NOT_FOUND: unknown organization org_404\n")

    def test_token_prints_only_the_token(self):
        rc, out, err = self.cli("token", "org_1")
        self.assertEqual((rc, out, err), (0, TOKEN + "\n", ""))
        rc, out, err = self.cli("token", "acct-9", "--account-ref", "--min-ttl", "300")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.rec.requests[-1].account_ref, "acct-9")
        self.assertEqual(self.rec.requests[-1].min_ttl.seconds, 300)

    def test_token_json(self):
        rc, out, err = self.cli("token", "org_1", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(set(json.loads(out)), {"token", "expires_at", "scopes", "organization_id"})
        self.assertEqual(json.loads(out)["token"], TOKEN)

    def test_token_errors_exit_1_without_token(self):
        for org, code in (("org_gone", "FAILED_PRECONDITION"), ("org_busy", "UNAVAILABLE")):
            rc, out, err = self.cli("token", org)
            self.assertEqual(rc, 1, err)  # the daemon answered: not "unreachable" (3)
            self.assertEqual(out, "")
            self.assertTrue(err.startswith("connect-broker: token: %s: " % code), err)
            self.assertNotIn("SeCrEt", err)

    def test_deadline_from_timeout(self):
        rc, out, err = self.cli("--timeout", "0.5", "token", "org_slow")
        self.assertEqual(rc, 1, err)
        self.assertTrue(err.startswith("connect-broker: token: DEADLINE_EXCEEDED: "), err)
        self.assertEqual(out, "")

    def test_authorize_url(self):
        rc, out, err = self.cli("authorize-url", "acct-7", "--scope", "payments.read", "--scope",
                                "refunds.read,orders.read", "--force", "--locale", "nl_NL",
                                "--landing-page", "signup")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "https://my.mollie.com/oauth2/authorize?state=st_1&scope="
                              "payments.read+refunds.read+orders.read\n")
        r = self.rec.requests[-1]
        self.assertEqual(r.account_ref, "acct-7")
        self.assertEqual(list(r.scopes), ["payments.read", "refunds.read", "orders.read"])
        self.assertEqual(r.approval_prompt, onboarding_pb2.APPROVAL_PROMPT_FORCE)
        self.assertEqual(r.locale, "nl_NL")
        self.assertEqual(r.landing_page, onboarding_pb2.LANDING_PAGE_SIGNUP)
        rc, out, err = self.cli("authorize-url", "acct-7", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(set(json.loads(out)), {"authorize_url", "state", "expires_at"})
        self.assertEqual(list(self.rec.requests[-1].scopes), [])
        self.assertEqual(self.rec.requests[-1].approval_prompt,
                         onboarding_pb2.APPROVAL_PROMPT_UNSPECIFIED)

    def test_complete_authorization_and_refresh(self):
        rc, out, err = self.cli("complete-authorization", "--code", "auth_good", "--state", "st_1")
        self.assertEqual(rc, 0, err)
        self.assertIn("organization_id:          org_3\n", out)
        rc, out, err = self.cli("complete-authorization", "--code", "auth_bad", "--state", "st_1")
        self.assertEqual(rc, 1)
        self.assertNotIn("auth_bad", err)
        rc, out, err = self.cli("refresh", "org_1")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^org_1 \(Shop 1\) active, token expires in (59m|1h), 2 refreshes, "
                              r"last refresh: ok\n$")

    # --- connect-broker call (ProxyService) ---

    def test_call_prints_the_body_exactly(self):
        rc, out, err = self.cli_bytes("call", "org_1", "GET", "/v2/profiles")
        self.assertEqual((rc, out, err), (0, PROFILES, ""))
        r = self.rec.requests[-1]
        self.assertEqual((r.organization_id, r.method, r.path), ("org_1", "GET", "/v2/profiles"))
        self.assertEqual((r.body, r.testmode, r.idempotency_key, len(r.query), len(r.headers)),
                         (b"", False, "", 0, 0))

    def test_call_sends_every_option(self):
        data = '{"amount":{"currency":"EUR","value":"10.00"},"description":"Order 1"}'
        rc, out, err = self.cli_bytes(
            "call", "--account-ref", "shop-42", "post", "/v2/payments", "--testmode",
            "--idempotency-key", "order-1-attempt", "--data", data, "--query",
            "include=details.qrCode", "--query", "a=b=c", "--header", "X-Request-Id: req 1",
            "--header", "Accept-Language:nl_NL")
        self.assertEqual((rc, out, err), (0, PAYMENT, ""))
        r = self.rec.requests[-1]
        self.assertEqual(r.WhichOneof("merchant"), "account_ref")
        self.assertEqual(r.account_ref, "shop-42")
        self.assertEqual((r.method, r.path, r.body), ("POST", "/v2/payments", data.encode()))
        self.assertTrue(r.testmode)
        self.assertEqual(r.idempotency_key, "order-1-attempt")
        self.assertEqual([(q.name, q.value) for q in r.query],
                         [("include", "details.qrCode"), ("a", "b=c")])
        self.assertEqual([(h.name, h.value) for h in r.headers],
                         [("X-Request-Id", "req 1"), ("Accept-Language", "nl_NL")])

    def test_call_data_file_and_stdin(self):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "cb-fake-body-%d.json" % os.getpid())
        with open(path, "w") as f:
            f.write('{"description": "from a file"}\n')
        try:
            rc, _, err = self.cli_bytes("call", "org_1", "POST", "/v2/payments", "--data-file",
                                        path)
        finally:
            os.unlink(path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.rec.requests[-1].body, b'{"description": "from a file"}\n')
        rc, _, err = self.cli_bytes("call", "org_1", "PATCH", "/v2/payments", "--data-file", "-",
                                    input=b'{"description":"from stdin"}')
        self.assertEqual(rc, 4, err)  # the fake answers this PATCH with a 500
        self.assertEqual(self.rec.requests[-1].body, b'{"description":"from stdin"}')
        self.assertEqual(self.rec.requests[-1].method, "PATCH")

    def test_call_non_2xx_prints_body_and_status_and_exits_4(self):
        rc, out, err = self.cli_bytes("call", "org_1", "GET", "/v2/payments/tr_missing")
        self.assertEqual(rc, 4)
        self.assertEqual(out, NOT_FOUND_BODY)
        self.assertEqual(err, "connect-broker: call: HTTP 404 Not Found: No payment exists with "
                              "token tr_missing.\n")
        rc, out, err = self.cli_bytes("call", "org_1", "GET", "/v2/other")
        self.assertEqual((rc, out), (4, b"<html>oops</html>"))
        self.assertEqual(err, "connect-broker: call: HTTP 500 Internal Server Error\n")

    def test_call_include_pretty_and_empty_body(self):
        rc, out, err = self.cli("call", "org_1", "GET", "/v2/profiles", "--include", "--pretty")
        self.assertEqual(rc, 0, err)
        head, body = out.split("\n\n", 1)
        self.assertEqual(head, "HTTP/1.1 200 OK\nContent-Type: application/hal+json")
        self.assertTrue(body.startswith('{\n  "count": 1,\n  "_embedded": {\n'), body)
        self.assertEqual(json.loads(body), json.loads(PROFILES))
        rc, out, err = self.cli("call", "org_1", "DELETE", "/v2/payments/tr_gone", "--include")
        self.assertEqual((rc, out, err), (0, "HTTP/1.1 204 No Content\n\n", ""))

    def test_call_json(self):
        rc, out, err = self.cli("call", "org_1", "POST", "/v2/payments", "--data", "{}", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count("\n"), 1)
        doc = json.loads(out)
        self.assertEqual(doc["status"], 201)
        self.assertEqual(doc["body"], json.loads(PAYMENT))
        self.assertIn({"name": "Location", "value": "https://api.mollie.com/v2/payments/tr_fake1"},
                      doc["headers"])
        self.assertEqual((doc["attempts"], doc["token_refreshed"]), (1, False))
        rc, out, err = self.cli("call", "org_1", "DELETE", "/v2/payments/tr_gone", "--json")
        doc = json.loads(out)
        self.assertEqual((doc["status"], doc["body"], doc["attempts"], doc["token_refreshed"]),
                         (204, None, 2, True))
        rc, out, err = self.cli("call", "org_1", "GET", "/v2/payments/tr_missing", "--json",
                                "--pretty")
        self.assertEqual(rc, 4)
        self.assertEqual(json.loads(out)["body"]["title"], "Not Found")
        self.assertGreater(out.count("\n"), 5)
        self.assertIn("HTTP 404 Not Found", err)

    def test_call_broker_errors_exit_1(self):
        for args, code in ((["org_404404", "GET", "/v2/profiles"], "NOT_FOUND"),
                           (["org_gone", "GET", "/v2/profiles"], "FAILED_PRECONDITION"),
                           (["org_1", "GET", "/v2/refused", "--header", "Cookie: a=b"],
                            "INVALID_ARGUMENT")):
            rc, out, err = self.cli("call", *args)
            self.assertEqual(rc, 1, err)
            self.assertEqual(out, "")
            self.assertTrue(err.startswith("connect-broker: call: %s: " % code), err)
        rc, out, err = self.cli("--timeout", "0.5", "call", "org_1", "GET", "/v2/slow")
        self.assertEqual((rc, out), (1, ""))
        self.assertTrue(err.startswith("connect-broker: call: DEADLINE_EXCEEDED: "), err)

    def test_call_usage_errors_reach_nothing(self):
        for args in (["org_1", "PUT", "/v2/payments"],
                     ["org_1", "GET", "/v2/payments", "--data", "{}"],
                     ["org_1", "POST", "/v2/payments", "--data", "{\"a\":}"],
                     ["org_1", "POST", "/v2/payments", "--paged"],
                     ["org_1", "GET", "/v2/payments?from=tr_1"],
                     ["org_1", "GET", "/v2/payments", "--header", "X: a\r\nCookie: b"],
                     ["org_1", "GET", "/v2/payments", "--paged", "--include"]):
            rc, out, err = self.cli("call", *args)
            self.assertEqual(rc, 2, "%s: %s" % (args, err))
            self.assertEqual(out, "")
            self.assertTrue(err.startswith("connect-broker: call: "), err)
            self.assertEqual(err.count("\n"), 1, err)
        self.assertEqual(self.rec.requests, [])

    def test_call_paged_prints_one_item_per_line(self):
        rc, out, err = self.cli("call", "org_1", "GET", "/v2/payments", "--paged", "--testmode",
                                "--query", "limit=2")
        self.assertEqual((rc, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual([json.loads(line)["id"] for line in lines],
                         ["tr_1", "tr_2", "tr_3", "tr_4", "tr_5"])
        self.assertEqual(lines[1], '{"resource":"payment","id":"tr_2"}')  # compacted to one line
        r = self.rec.requests[-1]
        self.assertIsInstance(r, proxy_pb2.ProxyPagedRequest)
        self.assertEqual((r.organization_id, r.path, r.testmode, r.max_items),
                         ("org_1", "/v2/payments", True, 0))
        self.assertEqual([(q.name, q.value) for q in r.query], [("limit", "2")])
        rc, out, err = self.cli("call", "org_1", "GET", "/v2/payments", "--paged",
                                "--max-items", "3")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.splitlines()), 3)
        self.assertEqual(self.rec.requests[-1].max_items, 3)

    def test_call_paged_json_wraps_each_page(self):
        rc, out, err = self.cli("call", "org_1", "GET", "/v2/payments", "--paged", "--json")
        self.assertEqual(rc, 0, err)
        pages = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([p["page_number"] for p in pages], [1, 2, 3])
        self.assertEqual([len(p["items"]) for p in pages], [2, 2, 1])
        self.assertEqual(pages[0]["embedded_key"], "payments")
        self.assertEqual(pages[0]["status"], 200)
        self.assertEqual(pages[2]["items"][0]["id"], "tr_5")

    def test_call_paged_error_page_ends_it_with_exit_4(self):
        rc, out, err = self.cli("call", "org_1", "GET", "/v2/limited", "--paged")
        self.assertEqual(rc, 4)
        self.assertEqual([json.loads(line)["id"] for line in out.splitlines()], ["tr_1", "tr_2"])
        self.assertEqual(err, "connect-broker: call: page 2: HTTP 429 Too Many Requests: Slow "
                              "down\n")
        rc, out, err = self.cli("call", "org_1", "GET", "/v2/limited", "--paged", "--json")
        self.assertEqual(rc, 4)
        pages = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([p["status"] for p in pages], [200, 429])
        self.assertEqual(pages[1]["body"]["detail"], "Slow down")
        self.assertEqual(pages[1]["headers"], [{"name": "Retry-After", "value": "7"}])

    def test_call_paged_broker_errors(self):
        rc, out, err = self.cli("call", "org_1", "GET", "/v2/broken", "--paged")
        self.assertEqual(rc, 1)
        self.assertEqual(len(out.splitlines()), 2)  # the first page's items were printed
        self.assertEqual(err, "connect-broker: call: INTERNAL: page 2 is not a HAL list\n")
        rc, out, err = self.cli("call", "org_404404", "GET", "/v2/payments", "--paged")
        self.assertEqual((rc, out), (1, ""))
        self.assertTrue(err.startswith("connect-broker: call: NOT_FOUND: "), err)

    # --- connectbroker_client.py (Python example library) ---

    def test_python_library(self):
        tok = cbc.get_access_token(self.address, organization_id="org_1", min_ttl_seconds=60)
        self.assertEqual(tok["token"], TOKEN)
        self.assertEqual(tok["organization_id"], "org_1")
        self.assertEqual(tok["expires_at"],
                         datetime.datetime.fromtimestamp(NOW + 3600, datetime.timezone.utc))
        self.assertEqual(self.rec.requests[-1].min_ttl.seconds, 60)
        merchants = cbc.list_merchants(self.address)
        self.assertEqual([m["organization_id"] for m in merchants], ["org_1", "org_2", "org_3"])
        self.assertEqual(cbc.list_merchants(self.address, status="revoked")[0]["account_ref"],
                         "acct-2")
        begun = cbc.begin_authorization(self.address, "acct-5", ["payments.read"],
                                        landing_page="login")
        self.assertEqual(begun["state"], "st_1")
        self.assertEqual(self.rec.requests[-1].landing_page, onboarding_pb2.LANDING_PAGE_LOGIN)
        with self.assertRaises(cbc.BrokerError) as caught:
            cbc.get_access_token(self.address, organization_id="org_busy")
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertFalse(caught.exception.unreachable)
        with self.assertRaises(ValueError):
            cbc.get_access_token(self.address)

    def test_python_call_and_call_paged(self):
        r = cbc.call(self.address, "get", "/v2/profiles", organization_id="org_1",
                     query={"limit": 5})
        self.assertEqual(r["status"], 200)
        self.assertEqual(r["body"], PROFILES)
        self.assertEqual(r["json"]["_embedded"]["profiles"][0]["id"], "pfl_7")
        self.assertEqual(r["headers"], [("Content-Type", "application/hal+json")])
        sent = self.rec.requests[-1]
        self.assertEqual((sent.method, [(q.name, q.value) for q in sent.query]),
                         ("GET", [("limit", "5")]))
        r = cbc.call(self.address, "POST", "/v2/payments", account_ref="shop-1",
                     body={"description": "x"}, testmode=True, idempotency_key="k1",
                     headers=[("X-Request-Id", "r1")])
        self.assertEqual((r["status"], r["json"]["id"]), (201, "tr_fake1"))
        sent = self.rec.requests[-1]
        self.assertEqual((sent.account_ref, sent.body, sent.testmode, sent.idempotency_key),
                         ("shop-1", b'{"description":"x"}', True, "k1"))
        r = cbc.call(self.address, "GET", "/v2/payments/tr_missing", organization_id="org_1")
        self.assertEqual(r["status"], 404)  # a result, not an exception
        with self.assertRaises(cbc.BrokerError) as caught:
            cbc.call(self.address, "GET", "/v2/profiles", organization_id="org_404404")
        self.assertEqual(caught.exception.code, grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(ValueError):
            cbc.call(self.address, "GET", "/v2/profiles")
        pages = list(cbc.call_paged(self.address, "/v2/payments", organization_id="org_1",
                                    testmode=True, max_items=4))
        self.assertEqual([[i["id"] for i in p["items"]] for p in pages],
                         [["tr_1", "tr_2"], ["tr_3", "tr_4"]])
        self.assertEqual(self.rec.requests[-1].max_items, 4)
        pages = list(cbc.call_paged(self.address, "/v2/limited", organization_id="org_1"))
        self.assertEqual([p["status"] for p in pages], [200, 429])
        with self.assertRaises(cbc.BrokerError) as caught:
            list(cbc.call_paged(self.address, "/v2/broken", organization_id="org_1"))
        self.assertEqual(caught.exception.code, grpc.StatusCode.INTERNAL)
        self.assertFalse(caught.exception.unreachable)

    def test_python_create_payment(self):
        rc, out, err = self.python_cli("create-payment", "org_1", "--amount", "10.00",
                                       "--description", "Order 12", "--redirect-url",
                                       "https://shop.example/return")
        self.assertEqual((rc, out, err), (0, "tr_fake1\n", ""))
        profiles, payment = self.rec.requests[-2:]
        self.assertEqual((profiles.method, profiles.path), ("GET", "/v2/profiles"))
        self.assertEqual((payment.method, payment.path), ("POST", "/v2/payments"))
        self.assertTrue(payment.testmode)
        self.assertTrue(payment.idempotency_key.startswith("cb-example-"), payment.idempotency_key)
        self.assertEqual(json.loads(payment.body), {
            "amount": {"currency": "EUR", "value": "10.00"}, "description": "Order 12",
            "redirectUrl": "https://shop.example/return", "profileId": "pfl_7"})
        rc, out, err = self.python_cli("create-payment", "org_1", "--amount", "1.00",
                                       "--description", "d", "--redirect-url", "https://x.example",
                                       "--idempotency-key", "order-12")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.rec.requests[-1].idempotency_key, "order-12")
        rc, out, err = self.python_cli("create-payment", "org_gone", "--amount", "1.00",
                                       "--description", "d", "--redirect-url", "https://x.example")
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("FAILED_PRECONDITION", err)
        rc, out, err = self.python_cli("create-payment", "org_422", "--amount", "0.01",
                                       "--description", "d", "--redirect-url", "https://x.example")
        self.assertEqual((rc, out), (4, ""))
        self.assertEqual(err, "connectbroker_client.py: create-payment: POST /v2/payments: HTTP "
                              "422: The amount is lower than the minimum\n")

    def python_cli(self, *args):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python",
                              "connectbroker_client.py")
        p = subprocess.run(["/usr/bin/python3", script, "--address", self.address, *args],
                           capture_output=True, text=True, timeout=30, env=dict(os.environ))
        return p.returncode, p.stdout, p.stderr

    def test_python_cli_masks_token(self):
        rc, out, err = self.python_cli("token", "org_1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["token"], "access_[redacted]")
        self.assertNotIn("SeCrEt", out)
        rc, out, err = self.python_cli("token", "org_1", "--show-token")
        self.assertEqual(json.loads(out)["token"], TOKEN)
        rc, out, err = self.python_cli("merchants", "--status", "active")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(json.loads(out)), 2)
        rc, out, err = self.python_cli("token", "org_gone")
        self.assertEqual(rc, 1)
        self.assertIn("FAILED_PRECONDITION", err)

    def test_python_unreachable(self):
        with self.assertRaises(cbc.BrokerError) as caught:
            cbc.list_merchants("127.0.0.1:1")
        self.assertTrue(caught.exception.unreachable)
        self.assertIn("cannot reach", str(caught.exception))
        p = subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "..", "python", "connectbroker_client.py"),
            "--address", "127.0.0.1:1", "merchants"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 3, p.stderr)


if __name__ == "__main__":
    unittest.main()
