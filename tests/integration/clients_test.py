#!/usr/bin/python3
"""End-to-end: the Python example client (client/python) and the connect-broker CLI against the
real daemon and the real simulator."""
import json
import os
import subprocess
import sys
import unittest
import urllib.parse

import grpc

from harness import ACTIVE, CLI, Env

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
os.environ.setdefault("CONNECT_BROKER_PY_STUBS", os.environ.get("CB_PY_STUBS", ""))
import connectbroker_client as cbc  # noqa: E402

PYCLIENT = os.path.join(os.path.dirname(__file__), "..", "..", "client", "python",
                        "connectbroker_client.py")


class ClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = Env()
        cls.env.start_daemon()
        cls.addr = f"127.0.0.1:{cls.env.grpc_port}"
        for i, org in enumerate(["org_601", "org_602", "org_603"]):
            cls.env.onboard(org, name=f"Client Shop {i}", account_ref=f"client-shop-{i}")

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def cli(self, *args, check=True):
        r = subprocess.run([CLI, "--address", self.addr, *args], capture_output=True, text=True,
                           timeout=30)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    # --- Python client ----------------------------------------------------------------------
    def test_python_client_gets_a_valid_token(self):
        tok = cbc.get_access_token(self.addr, organization_id="org_601")
        self.assertEqual(tok["organization_id"], "org_601")
        self.assertIn(tok["token"], self.env.valid_access_tokens())
        by_ref = cbc.get_access_token(self.addr, account_ref="client-shop-1")
        self.assertEqual(by_ref["organization_id"], "org_602")

    def test_python_client_lists_merchants(self):
        orgs = {m["organization_id"] for m in cbc.list_merchants(self.addr)}
        self.assertTrue({"org_601", "org_602", "org_603"} <= orgs)

    def test_python_client_errors(self):
        with self.assertRaises(cbc.BrokerError) as e:
            cbc.get_access_token(self.addr, organization_id="org_404404")
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_python_client_command_line_masks_the_token(self):
        env = dict(os.environ)
        r = subprocess.run(["/usr/bin/python3", PYCLIENT, "--address", self.addr, "token",
                            "org_601"], capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        token = cbc.get_access_token(self.addr, organization_id="org_601")["token"]
        self.assertNotIn(token, r.stdout)
        shown = subprocess.run(["/usr/bin/python3", PYCLIENT, "--address", self.addr, "token",
                                "org_601", "--show-token"], capture_output=True, text=True,
                               timeout=30, env=env)
        self.assertIn(token, shown.stdout)

    def test_python_begin_authorization_then_onboard(self):
        res = cbc.begin_authorization(self.addr, "client-shop-py", scopes=["payments.read"])
        url = res["authorize_url"] if isinstance(res, dict) else res
        query = self.env.consent(url, org="org_604", name="Py Shop")
        status, body = self.env.callback(query)
        self.assertEqual(status, 200, body)
        m = self.env.merchant("org_604")
        self.assertEqual(m.account_ref, "client-shop-py")
        # organizations.read is always requested: the broker needs it to learn the organization.
        self.assertEqual(set(m.scopes), {"payments.read", "organizations.read"})

    # --- CLI --------------------------------------------------------------------------------
    def test_cli_merchants_table_and_json(self):
        table = self.cli("merchants").stdout
        self.assertIn("ORGANIZATION", table)
        self.assertIn("org_602", table)
        self.assertIn("Client Shop 1", table)
        rows = json.loads(self.cli("merchants", "--json").stdout)
        by_org = {r["organization_id"]: r for r in rows}
        self.assertEqual(by_org["org_603"]["account_ref"], "client-shop-2")
        self.assertEqual(by_org["org_603"]["status"], "GRANT_STATUS_ACTIVE")
        for token in self.env.all_issued_tokens():
            self.assertNotIn(token, table)

    def test_cli_token_prints_only_the_token(self):
        out = self.cli("token", "org_602").stdout.strip()
        self.assertIn(out, self.env.valid_access_tokens())

    def test_cli_merchant_and_refresh(self):
        before = self.env.merchant("org_603")
        self.cli("refresh", "org_603")
        after = self.env.merchant("org_603")
        self.assertGreater(after.generation, before.generation)
        self.assertEqual(after.status, ACTIVE)
        shown = self.cli("merchant", "org_603").stdout
        self.assertIn("org_603", shown)
        self.assertIn("Client Shop 2", shown)

    def test_cli_authorize_url(self):
        url = self.cli("authorize-url", "client-shop-cli", "--scope", "payments.read",
                       "--force", "--locale", "nl_NL").stdout.strip()
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        self.assertEqual(q["approval_prompt"], ["force"])
        self.assertEqual(q["locale"], ["nl_NL"])
        self.assertEqual(q["scope"], ["payments.read organizations.read"])

    def test_cli_errors(self):
        r = self.cli("merchant", "org_404404", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("NOT_FOUND", r.stderr)
        r = self.cli("token", "not-an-org", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        r = self.cli("authorize-url", "ref", "--scope", "bogus", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
