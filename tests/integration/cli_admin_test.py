#!/usr/bin/python3
"""End-to-end: the connect-broker CLI's admin commands (revoke, delete, import, events, stats)
against the real daemon and the real simulator. No fixed sleeps: every wait has a deadline."""
import json
import os
import queue
import signal
import subprocess
import threading
import time
import unittest

from harness import ACTIVE, CLI, Env, merchant_pb2, wait_for

REVOKED = merchant_pb2.GRANT_STATUS_REVOKED


class CliCase(unittest.TestCase):
    """One simulator + daemon per test class, and the CLI runner."""

    @classmethod
    def setUpClass(cls):
        cls.env = Env()
        cls.env.start_daemon()
        cls.addr = f"127.0.0.1:{cls.env.grpc_port}"
        cls.tmp = os.path.join(cls.env.dir, "cli")
        os.mkdir(cls.tmp, 0o700)

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def cli(self, *args, input=None, expect=0):
        """Runs the CLI; checks the exit status and that no token the simulator ever issued
        (access or refresh, including imported ones) appears in its output."""
        r = subprocess.run([CLI, "--address", self.addr, *args], capture_output=True, text=True,
                           timeout=30, input=input)
        if expect is not None:
            self.assertEqual(r.returncode, expect, f"{args}: {r.stdout}{r.stderr}")
        for token in self.env.all_issued_tokens():
            self.assertNotIn(token, r.stdout, args)
            self.assertNotIn(token, r.stderr, args)
        return r

    def refresh_tokens_of(self, org):
        return [t for t in self.env.truth()["refresh_tokens"] if t["organization_id"] == org]

    def new_sim_grant(self):
        body = {"count": 1, "scopes": "organizations.read payments.read"}
        grant = self.env.sim_request("POST", "/_sim/grants", body)["grants"][0]
        return grant["organization_id"], grant["refresh_token"]

    def private_file(self, name, text):
        path = os.path.join(self.tmp, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def events(self, *args):
        out = self.cli("events", "--json", *args).stdout
        return [json.loads(line) for line in out.splitlines()]


class CliAdminTest(CliCase):
    # --- revoke ---------------------------------------------------------------------------------
    def test_revoke(self):
        self.env.onboard("org_701", name="Revoke Shop")
        self.assertTrue(any(t["valid"] for t in self.refresh_tokens_of("org_701")))
        out = self.cli("revoke", "org_701").stdout
        self.assertTrue(out.startswith("org_701 (Revoke Shop) revoked"), out)
        self.assertEqual(out.count("\n"), 1, out)
        self.assertEqual(self.env.merchant("org_701").status, REVOKED)
        # Mollie (the simulator) no longer honours any refresh token of the merchant.
        tokens = self.refresh_tokens_of("org_701")
        self.assertTrue(tokens)
        self.assertFalse(any(t["valid"] for t in tokens), tokens)
        r = self.cli("token", "org_701", expect=1)
        self.assertEqual(r.stdout, "")
        self.assertTrue(r.stderr.startswith("connect-broker: token: FAILED_PRECONDITION: "),
                        r.stderr)
        shown = json.loads(self.cli("merchant", "org_701", "--json").stdout)
        self.assertEqual(shown["status"], "GRANT_STATUS_REVOKED")

    def test_revoke_json_and_unknown(self):
        self.env.onboard("org_702")
        shown = json.loads(self.cli("revoke", "org_702", "--json").stdout)
        self.assertEqual(shown["organization_id"], "org_702")
        self.assertEqual(shown["status"], "GRANT_STATUS_REVOKED")
        r = self.cli("revoke", "org_702404", expect=1)
        self.assertTrue(r.stderr.startswith("connect-broker: revoke: NOT_FOUND: "), r.stderr)

    # --- delete ---------------------------------------------------------------------------------
    def test_delete_requires_yes(self):
        self.env.onboard("org_703")
        r = self.cli("delete", "org_703", expect=2)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr, "connect-broker: delete: refusing to delete without --yes\n")
        self.assertEqual(self.env.merchant("org_703").status, ACTIVE)  # untouched
        r = self.cli("delete", "org_703", "--yes")
        self.assertEqual(r.stdout, "deleted org_703\n")
        r = self.cli("merchant", "org_703", expect=1)
        self.assertIn("NOT_FOUND", r.stderr)
        self.assertNotIn("org_703", self.cli("merchants").stdout)
        r = self.cli("delete", "org_703", "--yes", expect=1)
        self.assertTrue(r.stderr.startswith("connect-broker: delete: NOT_FOUND: "), r.stderr)

    # --- import ---------------------------------------------------------------------------------
    def test_import_from_a_private_file(self):
        org, refresh_token = self.new_sim_grant()
        path = self.private_file("import-file", refresh_token + "\n")
        r = self.cli("import", "--refresh-token-file", path, "--account-ref", "imported-file")
        self.assertTrue(r.stdout.startswith(f"{org} ("), r.stdout)
        self.assertIn(" active, ", r.stdout)
        self.assertEqual(r.stderr, "")  # 0600: no warning
        m = self.env.merchant(org)
        self.assertEqual(m.status, ACTIVE)
        self.assertEqual(m.account_ref, "imported-file")
        self.assertEqual(set(m.scopes), {"organizations.read", "payments.read"})
        served = subprocess.run([CLI, "--address", self.addr, "token", org], capture_output=True,
                                text=True, timeout=30)
        self.assertEqual(served.returncode, 0, served.stderr)
        self.assertIn(served.stdout.strip(), self.env.valid_access_tokens())

    def test_import_from_stdin(self):
        org, refresh_token = self.new_sim_grant()
        r = self.cli("import", "--refresh-token-file", "-", "--json", input=refresh_token + "\n")
        shown = json.loads(r.stdout)
        self.assertEqual(shown["organization_id"], org)
        self.assertEqual(shown["status"], "GRANT_STATUS_ACTIVE")
        self.assertEqual(self.env.merchant(org).status, ACTIVE)

    def test_import_of_a_bogus_token_fails(self):
        bogus = "refresh_bogus" + "x" * 27
        path = self.private_file("import-bogus", bogus)
        before = {m.organization_id for m in self.env.merchants()}
        r = self.cli("import", "--refresh-token-file", path, expect=1)
        self.assertEqual(r.stdout, "")
        self.assertTrue(r.stderr.startswith("connect-broker: import: FAILED_PRECONDITION: "),
                        r.stderr)
        self.assertNotIn(bogus, r.stderr)
        self.assertEqual({m.organization_id for m in self.env.merchants()}, before)

    def test_import_usage_errors(self):
        r = self.cli("import", "--refresh-token-file", os.path.join(self.tmp, "absent"), expect=2)
        self.assertIn("cannot read", r.stderr)
        r = self.cli("import", "--refresh-token-file", "-", input="", expect=2)
        self.assertIn("empty", r.stderr)
        r = self.cli("import", expect=2)  # the token never comes from argv
        self.assertIn("--refresh-token-file", r.stderr)

    # --- events ---------------------------------------------------------------------------------
    def test_events_bad_org_is_a_daemon_error(self):
        r = self.cli("events", "--org", "not-an-org", expect=1)
        self.assertTrue(r.stderr.startswith("connect-broker: events: INVALID_ARGUMENT: "),
                        r.stderr)

    def test_events_follow_sees_a_live_event_and_stops_on_sigint(self):
        self.env.onboard("org_707")  # the backlog is not empty
        last = int(self.events()[-1]["sequence"])
        proc = subprocess.Popen([CLI, "--address", self.addr, "events", "--follow"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            def next_line(deadline):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out waiting for a line from events --follow")
                line = lines.get(timeout=remaining)
                if line is None:
                    raise AssertionError("events --follow ended: " + proc.stderr.read())
                return line

            # The backlog up to `last` arrives first: then the follower is connected.
            deadline = time.monotonic() + 20
            while int(next_line(deadline).split(" ")[0]) < last:
                pass
            self.env.onboard("org_708", name="Live Shop")
            deadline = time.monotonic() + 20
            while True:
                fields = next_line(deadline).rstrip("\n").split(" ", 5)
                if fields[3] == "org_708" and fields[2] == "onboarded":
                    break
            self.assertGreater(int(fields[0]), last)
            proc.send_signal(signal.SIGINT)
            self.assertEqual(proc.wait(timeout=20), 0)
            reader.join(timeout=20)
            self.assertEqual(proc.stderr.read(), "")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()

    # --- stats ----------------------------------------------------------------------------------
    def test_stats(self):
        self.env.onboard("org_709")
        out = self.cli("stats").stdout
        values = dict(line.split(":", 1) for line in out.splitlines())
        values = {k: v.strip() for k, v in values.items()}
        self.assertEqual(set(values), {"grants", "scheduled", "refreshes_in_flight", "refreshes_ok",
                                       "refreshes_failed", "refresh_paused", "pause_reason"})
        self.assertEqual(int(values["grants"]), len(self.env.merchants()))
        self.assertEqual(values["refresh_paused"], "no")
        self.assertEqual(values["pause_reason"], "-")
        stats = json.loads(self.cli("stats", "--json").stdout)
        self.assertEqual(int(stats["grants"]), len(self.env.merchants()))
        self.assertIs(stats["refresh_paused"], False)


class CliEventsLifecycleTest(CliCase):
    """Onboard, revoke, delete one merchant, then list its events. A daemon of its own: deleting
    a revoked merchant has crashed the daemon before, which must not take the other tests down."""

    def test_events_list_the_lifecycle_in_order(self):
        self.env.onboard("org_706", name="Events Shop")
        self.cli("revoke", "org_706")
        self.cli("delete", "org_706", "--yes")
        lines = self.cli("events", "--org", "org_706").stdout.splitlines()
        fields = [line.split(" ", 5) for line in lines]
        seqs = [int(f[0]) for f in fields]
        self.assertEqual(seqs, sorted(set(seqs)), lines)  # strictly increasing
        self.assertTrue(all(f[3] == "org_706" for f in fields), lines)
        lifecycle = [f[2] for f in fields if f[2] in ("onboarded", "revoked", "deleted")]
        self.assertEqual(lifecycle, ["onboarded", "revoked", "deleted"], lines)
        by_type = {f[2]: f for f in fields}
        self.assertEqual(by_type["onboarded"][4], "active")
        self.assertEqual(by_type["revoked"][4], "revoked")
        self.assertRegex(by_type["onboarded"][1], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

        # The same as JSON Lines, and resumable after a sequence number.
        objs = self.events("--org", "org_706")
        self.assertEqual([int(o["sequence"]) for o in objs], seqs)
        types = [o["type"] for o in objs if o["type"] in (
            "EVENT_TYPE_ONBOARDED", "EVENT_TYPE_REVOKED", "EVENT_TYPE_DELETED")]
        self.assertEqual(types, ["EVENT_TYPE_ONBOARDED", "EVENT_TYPE_REVOKED",
                                 "EVENT_TYPE_DELETED"])
        onboarded_seq = int(by_type["onboarded"][0])
        after = self.events("--org", "org_706", "--after", str(onboarded_seq))
        self.assertEqual([int(o["sequence"]) for o in after],
                         [s for s in seqs if s > onboarded_seq])
        # Unfiltered: every merchant's events, still strictly increasing.
        everything = [int(o["sequence"]) for o in self.events()]
        self.assertEqual(everything, sorted(set(everything)))
        self.assertTrue(set(seqs) <= set(everything))


if __name__ == "__main__":
    unittest.main(verbosity=2)
