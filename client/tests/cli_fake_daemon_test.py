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


class FakeDaemonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rec = Recorder()
        cls.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        admin_pb2_grpc.add_AdminServiceServicer_to_server(FakeAdmin(cls.rec), cls.server)
        token_pb2_grpc.add_TokenServiceServicer_to_server(FakeToken(cls.rec), cls.server)
        onboarding_pb2_grpc.add_OnboardingServiceServicer_to_server(FakeOnboarding(cls.rec),
                                                                   cls.server)
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
