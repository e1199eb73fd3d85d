#!/usr/bin/python3
"""connect-broker with no daemon listening: exit 3 and a clear message; usage errors exit 2
(delete without --yes, import without a readable token file and `call` with bad arguments never
reach for the daemon).

Usage: cli_unreachable_test.py PATH/TO/connect-broker
"""
import os
import subprocess
import sys
import unittest

CLI = None


def run(*args, env=None):
    full_env = dict(os.environ)
    full_env.pop("CONNECT_BROKER_ADDRESS", None)
    full_env.update(env or {})
    p = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=30, env=full_env)
    return p.returncode, p.stdout, p.stderr


class UnreachableTest(unittest.TestCase):
    def test_refused_port_exits_3_with_clear_message(self):
        rc, out, err = run("--address", "127.0.0.1:1", "merchants")
        self.assertEqual(rc, 3, err)
        self.assertEqual(out, "")
        self.assertTrue(err.startswith("connect-broker: merchants: UNAVAILABLE: "), err)
        self.assertIn("cannot reach the connect-broker daemon at 127.0.0.1:1", err)
        self.assertEqual(err.count("\n"), 1, err)  # one line, no gRPC log noise

    def test_address_from_environment_and_unix_socket(self):
        env = {"CONNECT_BROKER_ADDRESS": "unix:/nonexistent/cb.sock"}
        rc, _, err = run("token", "org_1", env=env)
        self.assertEqual(rc, 3, err)
        self.assertTrue(err.startswith("connect-broker: token: UNAVAILABLE: "), err)
        self.assertIn("unix:/nonexistent/cb.sock", err)

    def test_global_options_after_subcommand(self):
        rc, _, err = run("refresh", "org_1", "--address", "127.0.0.1:1", "--timeout", "5")
        self.assertEqual(rc, 3, err)
        self.assertIn("connect-broker: refresh: UNAVAILABLE:", err)

    def test_admin_commands_unreachable(self):
        for args in (["stats"], ["revoke", "org_1"], ["delete", "org_1", "--yes"], ["events"],
                     ["events", "--follow"], ["call", "org_1", "GET", "/v2/profiles"],
                     ["call", "org_1", "GET", "/v2/payments", "--paged"]):
            rc, out, err = run("--address", "127.0.0.1:1", *args)
            self.assertEqual(rc, 3, "%s: %s" % (args, err))
            self.assertEqual(out, "", args)
            self.assertTrue(err.startswith("connect-broker: %s: " % args[0]), err)
            self.assertIn("cannot reach the connect-broker daemon at 127.0.0.1:1", err)

    def test_usage_errors_exit_2(self):
        for args in ([], ["bogus"], ["merchant"], ["merchants", "--status", "sleeping"],
                     ["merchants", "--limit", "0"], ["token", "org_1", "--min-ttl", "-1"],
                     ["authorize-url", "acct", "--locale", "xx_XX"],
                     ["complete-authorization", "--code", "c"], ["--timeout", "0", "merchants"],
                     ["revoke"], ["delete", "org_1"], ["import"],
                     ["import", "--refresh-token-file", "/nonexistent/token"],
                     ["import", "refresh_token_on_argv"], ["events", "--after", "-1"],
                     ["events", "--after", "x"], ["stats", "extra"],
                     ["call"], ["call", "org_1", "GET"], ["call", "org_1", "PUT", "/v2/x"],
                     ["call", "org_1", "GET", "/v2/payments", "--data", "{}"],
                     ["call", "org_1", "POST", "/v2/payments", "--data", "{bad"],
                     ["call", "org_1", "POST", "/v2/payments", "--data", "{}", "--data-file",
                      "/dev/null"],
                     ["call", "org_1", "POST", "/v2/payments", "--data-file",
                      "/nonexistent/body.json"],
                     ["call", "org_1", "POST", "/v2/payments", "--paged"],
                     ["call", "org_1", "GET", "/v2/payments", "--max-items", "2"],
                     ["call", "org_1", "GET", "/v2/payments", "--paged", "--max-items", "0"],
                     ["call", "org_1", "GET", "/v2/payments?limit=2"],
                     ["call", "org_1", "GET", "/oauth2/tokens"],
                     ["call", "org_1", "GET", "/v2/x", "--header", "NoColon"],
                     ["call", "org_1", "GET", "/v2/x", "--query", "novalue"],
                     ["call", "org_1", "GET", "/v2/x", "--idempotency-key", "k"],
                     ["call", "org_1", "GET", "/v2/x", "--include", "--json"]):
            rc, out, err = run("--address", "127.0.0.1:1", *args)
            self.assertEqual(rc, 2, "%s: %s" % (args, err))
            self.assertEqual(out, "", args)

    def test_help_for_every_subcommand(self):
        rc, out, _ = run("--help")
        self.assertEqual(rc, 0)
        for word in ("--address", "CONNECT_BROKER_ADDRESS", "--timeout", "Exit status",
                     "4 (call only)"):
            self.assertIn(word, out)
        expected = {
            "merchants": ["--status", "--limit", "--json", "needs-reauthorization"],
            "merchant": ["ORG", "--json"],
            "token": ["ORG", "--min-ttl", "--account-ref", "--json"],
            "authorize-url": ["ACCOUNT_REF", "--scope", "--force", "--locale", "--landing-page"],
            "complete-authorization": ["--code", "--state"],
            "refresh": ["ORG"],
            "revoke": ["ORG", "--json"],
            "delete": ["ORG", "--yes"],
            "import": ["--refresh-token-file", "--redirect-uri", "--account-ref", "stdin"],
            "events": ["--after", "--org", "--follow", "--json", "SEQ TIME TYPE ORG STATUS"],
            "stats": ["--json"],
            "call": ["ORG", "METHOD", "PATH", "--account-ref", "--query", "--data",
                     "--data-file", "--testmode", "--idempotency-key", "--header", "--paged",
                     "--max-items", "--include", "--pretty", "--json", "NDJSON", "exits 4"],
        }
        for command, words in expected.items():
            self.assertIn(command, out)
            rc, sub_out, _ = run(command, "--help")
            self.assertEqual(rc, 0, command)
            for word in words:
                self.assertIn(word, sub_out, command)


if __name__ == "__main__":
    CLI = sys.argv.pop(1)
    unittest.main()
