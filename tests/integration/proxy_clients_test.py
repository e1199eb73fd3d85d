#!/usr/bin/python3
"""End-to-end: Mollie API calls through the broker's ProxyService from the connect-broker CLI
(`call`, `call --paged`) and from the Python example client (`create-payment`), against the real
daemon and the real simulator. Every outcome is checked at the simulator (its /_sim/payments
control call), not only in what the clients print. No fixed sleeps."""
import json
import os
import subprocess
import sys
import unittest

from harness import CLI, Env

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
os.environ.setdefault("CONNECT_BROKER_PY_STUBS", os.environ.get("CB_PY_STUBS", ""))
import connectbroker_client as cbc  # noqa: E402

PYCLIENT = os.path.join(os.path.dirname(__file__), "..", "..", "client", "python",
                        "connectbroker_client.py")
SCOPES = ["organizations.read", "profiles.read", "payments.read", "payments.write"]
REDIRECT = "https://shop.example/orders/return"


class ProxyClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = Env()
        cls.env.start_daemon()
        cls.addr = f"127.0.0.1:{cls.env.grpc_port}"
        # One merchant per test, so that one test's payments never show up in another's list.
        for org in ("org_801", "org_802", "org_803", "org_804", "org_805"):
            cls.env.onboard(org, name=f"Proxy Shop {org}", account_ref=f"proxy-{org}",
                            scopes=SCOPES)

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    # --- helpers ----------------------------------------------------------------------------
    def cli(self, *args, expect=0, input=None):
        """The CLI against the daemon; checks its exit status and that no token the simulator
        ever issued appears in what it printed."""
        r = subprocess.run([CLI, "--address", self.addr, *args], capture_output=True, text=True,
                           timeout=60, input=input)
        if expect is not None:
            self.assertEqual(r.returncode, expect, f"{args}:\n{r.stdout}\n{r.stderr}")
        self.assert_no_token(r.stdout + r.stderr)
        return r

    def assert_no_token(self, text):
        for token in self.env.all_issued_tokens():
            self.assertNotIn(token, text)

    def sim_payments(self, org):
        return self.env.sim_request("GET", f"/_sim/payments?organization_id={org}")["payments"]

    def payment_body(self, org, description, profile_id=None):
        return json.dumps({"amount": {"currency": "EUR", "value": "12.50"},
                           "description": description, "redirectUrl": REDIRECT,
                           "profileId": profile_id or "pfl_" + org[len("org_"):]})

    # --- connect-broker call ----------------------------------------------------------------
    def test_cli_get_profiles(self):
        r = self.cli("call", "org_801", "GET", "/v2/profiles")
        self.assertEqual(r.stderr, "")
        body = json.loads(r.stdout)
        profiles = body["_embedded"]["profiles"]
        self.assertEqual([p["id"] for p in profiles], ["pfl_801"])
        self.assertEqual(body["count"], 1)
        # By account reference, with the response head.
        r = self.cli("call", "--account-ref", "proxy-org_801", "GET", "/v2/profiles", "--include")
        head, _, rest = r.stdout.partition("\n\n")
        self.assertEqual(head.splitlines()[0], "HTTP/1.1 200 OK")
        self.assertRegex(head, r"(?im)^content-type: application/hal\+json")
        self.assertNotRegex(head, r"(?im)^authorization:")
        self.assertEqual(json.loads(rest)["_embedded"]["profiles"][0]["id"], "pfl_801")

    def test_cli_creates_exactly_one_test_payment_with_an_idempotency_key(self):
        data = self.payment_body("org_802", "Order 802-1")
        args = ("call", "org_802", "POST", "/v2/payments", "--testmode", "--idempotency-key",
                "order-802-1", "--data", data)
        first = json.loads(self.cli(*args).stdout)
        self.assertTrue(first["id"].startswith("tr_"), first)
        self.assertEqual((first["mode"], first["status"], first["profileId"]),
                         ("test", "open", "pfl_802"))
        self.assertEqual(first["amount"], {"currency": "EUR", "value": "12.50"})
        # The same request again (a retry after a lost reply): Mollie replays the first answer.
        again = self.cli(*args, "--include").stdout
        head, _, body = again.partition("\n\n")
        self.assertEqual(head.splitlines()[0], "HTTP/1.1 201 Created")
        self.assertRegex(head, r"(?im)^idempotent-replayed: true$")
        self.assertEqual(json.loads(body)["id"], first["id"])
        payments = self.sim_payments("org_802")
        self.assertEqual([p["id"] for p in payments], [first["id"]])
        self.assertEqual((payments[0]["mode"], payments[0]["profile_id"], payments[0]["status"]),
                         ("test", "pfl_802", "open"))
        self.assertEqual(payments[0]["description"], "Order 802-1")
        # And it is there when asked for, in test mode.
        shown = json.loads(self.cli("call", "org_802", "GET", f"/v2/payments/{first['id']}",
                                    "--testmode").stdout)
        self.assertEqual((shown["id"], shown["mode"]), (first["id"], "test"))
        # A body from stdin, a new key: a second payment.
        second = json.loads(self.cli("call", "org_802", "POST", "/v2/payments", "--testmode",
                                     "--idempotency-key", "order-802-2", "--data-file", "-",
                                     input=self.payment_body("org_802", "Order 802-2")).stdout)
        self.assertNotEqual(second["id"], first["id"])
        self.assertEqual(sorted(p["id"] for p in self.sim_payments("org_802")),
                         sorted([first["id"], second["id"]]))

    def test_cli_paged_follows_three_pages(self):
        seeded = self.env.sim_request("POST", "/_sim/payments/seed", {
            "organization_id": "org_803", "count": 7, "mode": "test", "status": "open"})["ids"]
        live = self.env.sim_request("POST", "/_sim/payments/seed", {
            "organization_id": "org_803", "count": 2, "mode": "live", "status": "paid"})["ids"]
        self.assertEqual(len(seeded), 7)
        r = self.cli("call", "org_803", "GET", "/v2/payments", "--testmode", "--paged",
                     "--query", "limit=3")
        self.assertEqual(r.stderr, "")
        lines = r.stdout.splitlines()
        items = [json.loads(line) for line in lines]
        ids = [i["id"] for i in items]
        self.assertEqual(len(ids), 7, r.stdout)
        self.assertEqual(sorted(ids), sorted(seeded))  # every test payment once, no live one
        self.assertFalse(set(ids) & set(live))
        self.assertEqual({i["mode"] for i in items}, {"test"})
        # Mollie lists newest first.
        self.assertEqual(ids, list(reversed(seeded)))
        # Per-page metadata: three pages of 3, 3 and 1.
        pages = [json.loads(line) for line in self.cli(
            "call", "org_803", "GET", "/v2/payments", "--testmode", "--paged", "--query",
            "limit=3", "--json").stdout.splitlines()]
        self.assertEqual([p["page_number"] for p in pages], [1, 2, 3])
        self.assertEqual([len(p["items"]) for p in pages], [3, 3, 1])
        self.assertEqual({p["status"] for p in pages}, {200})
        self.assertEqual({p["embedded_key"] for p in pages}, {"payments"})
        self.assertEqual([i["id"] for p in pages for i in p["items"]], ids)
        # --max-items stops part-way through a page.
        r = self.cli("call", "org_803", "GET", "/v2/payments", "--testmode", "--paged",
                     "--query", "limit=3", "--max-items", "4")
        self.assertEqual([json.loads(line)["id"] for line in r.stdout.splitlines()], ids[:4])
        # Without --testmode the live payments are listed instead.
        r = self.cli("call", "org_803", "GET", "/v2/payments", "--paged")
        self.assertEqual(sorted(json.loads(line)["id"] for line in r.stdout.splitlines()),
                         sorted(live))

    def test_cli_mollie_errors_exit_4_and_broker_errors_exit_1(self):
        r = self.cli("call", "org_805", "GET", "/v2/payments/tr_doesnotexist", "--testmode",
                     expect=4)
        self.assertEqual(json.loads(r.stdout)["status"], 404)
        self.assertTrue(r.stderr.startswith("connect-broker: call: HTTP 404 Not Found"), r.stderr)
        # Missing profileId (required with OAuth): Mollie's 422, and no payment was created.
        body = json.dumps({"amount": {"currency": "EUR", "value": "1.00"},
                           "description": "no profile", "redirectUrl": REDIRECT})
        r = self.cli("call", "org_805", "POST", "/v2/payments", "--testmode", "--data", body,
                     expect=4)
        self.assertEqual(json.loads(r.stdout)["field"], "profileId")
        self.assertIn("HTTP 422 Unprocessable Entity: ", r.stderr)
        self.assertIn("profileId", r.stderr)
        self.assertEqual(self.sim_payments("org_805"), [])
        r = self.cli("call", "org_404404", "GET", "/v2/profiles", expect=1)
        self.assertEqual(r.stdout, "")
        self.assertTrue(r.stderr.startswith("connect-broker: call: NOT_FOUND: "), r.stderr)
        # The broker refuses what it must never forward; the CLI reports its reason.
        r = self.cli("call", "org_805", "GET", "/v2/profiles", "--header", "Cookie: a=b",
                     expect=1)
        self.assertTrue(r.stderr.startswith("connect-broker: call: INVALID_ARGUMENT: "), r.stderr)
        # Usage errors never reach the daemon (nothing changes at the simulator).
        self.cli("call", "org_805", "POST", "/v2/payments", "--data", "{not json", expect=2)
        self.assertEqual(self.sim_payments("org_805"), [])

    # --- Python example client --------------------------------------------------------------
    def test_python_example_creates_a_test_payment(self):
        r = subprocess.run(["/usr/bin/python3", PYCLIENT, "--address", self.addr,
                            "create-payment", "org_804", "--amount", "25.00", "--description",
                            "Python order 1", "--redirect-url", REDIRECT],
                           capture_output=True, text=True, timeout=60, env=dict(os.environ))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_no_token(r.stdout + r.stderr)
        payment_id = r.stdout.strip()
        self.assertRegex(payment_id, r"^tr_\w+$")
        self.assertEqual(r.stdout, payment_id + "\n")
        profile = cbc.first_profile_id(self.addr, organization_id="org_804")
        self.assertEqual(profile, "pfl_804")
        payments = self.sim_payments("org_804")
        self.assertEqual([p["id"] for p in payments], [payment_id])
        p = payments[0]
        self.assertEqual((p["mode"], p["profile_id"], p["status"], p["description"]),
                         ("test", profile, "open", "Python order 1"))
        self.assertEqual(p["amount"], {"currency": "EUR", "value": "25.00"})
        self.assertTrue(p["idempotency_key"].startswith("cb-example-"), p)
        # The library with a key of the caller's: a retry gives the same payment, not a new one.
        one = cbc.create_test_payment(self.addr, "3.00", "Python order 2", REDIRECT,
                                      account_ref="proxy-org_804", idempotency_key="py-2")
        two = cbc.create_test_payment(self.addr, "3.00", "Python order 2", REDIRECT,
                                      account_ref="proxy-org_804", idempotency_key="py-2")
        self.assertEqual(one["id"], two["id"])
        self.assertEqual(sorted(x["id"] for x in self.sim_payments("org_804")),
                         sorted([payment_id, one["id"]]))
        # And the paged helper sees both.
        listed = [i["id"] for page in cbc.call_paged(self.addr, "/v2/payments",
                                                     organization_id="org_804", testmode=True)
                  for i in page["items"]]
        self.assertEqual(sorted(listed), sorted([payment_id, one["id"]]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
