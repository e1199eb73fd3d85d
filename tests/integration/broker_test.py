#!/usr/bin/python3
"""Integration tests: the real connect-brokerd against the real mollie-sim, over real HTTPS,
gRPC and RocksDB. Run by ctest (see CMakeLists.txt) with paths in the environment."""
import os
import signal
import subprocess
import time
import unittest
import urllib.parse

import grpc

from harness import (ACTIVE, NEEDS_REAUTHORIZATION, REFRESH_FAILING, Env, admin_pb2,
                     files_containing, onboarding_pb2, wait_for, BROKERD)


class OnboardingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = Env()
        cls.env.start_daemon()

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def count(self):
        return len(self.env.merchants())

    def test_onboarding_through_the_http_callback(self):
        env = self.env
        begin = env.begin(account_ref="shop-onboard", scopes=["payments.read",
                                                             "organizations.read"])
        url = urllib.parse.urlsplit(begin.authorize_url)
        q = urllib.parse.parse_qs(url.query)
        self.assertEqual(url.path, "/oauth2/authorize")
        self.assertEqual(q["client_id"], ["app_integrationtest"])
        self.assertEqual(q["response_type"], ["code"])
        self.assertEqual(q["scope"], ["payments.read organizations.read"])
        self.assertEqual(q["state"], [begin.state])
        self.assertGreaterEqual(len(begin.state), 22)  # >= 128 bits, base64url
        self.assertEqual(q["redirect_uri"], ["https://platform.example/oauth/callback"])

        query = env.consent(begin.authorize_url, org="org_1001", name="Onboard Shop")
        status, body = env.callback(query)
        self.assertEqual(status, 200, body)
        self.assertIn("Onboard Shop", body)
        self.assertIn("org_1001", body)

        m = env.merchant("org_1001")
        self.assertEqual(m.status, ACTIVE)
        self.assertEqual(m.organization_name, "Onboard Shop")
        self.assertEqual(m.account_ref, "shop-onboard")
        self.assertEqual(set(m.scopes), {"payments.read", "organizations.read"})

        tok = env.token(org="org_1001")
        self.assertTrue(tok.access_token.startswith("access_"))
        self.assertIn(tok.access_token, env.valid_access_tokens())
        self.assertEqual(tok.organization_id, "org_1001")
        by_ref = env.token(account_ref="shop-onboard")
        self.assertEqual(by_ref.access_token, tok.access_token)

        # The same callback again: the state was single use.
        before = self.count()
        status, body = env.callback(query)
        self.assertEqual(status, 400)
        self.assertIn("already used", body)
        self.assertEqual(self.count(), before)

    def test_complete_authorization_over_grpc(self):
        env = self.env
        begin = env.begin(account_ref="shop-grpc")
        query = urllib.parse.parse_qs(env.consent(begin.authorize_url, org="org_1002"))
        resp = env.onboarding.CompleteAuthorization(onboarding_pb2.CompleteAuthorizationRequest(
            code=query["code"][0], state=query["state"][0]), timeout=10)
        self.assertEqual(resp.merchant.organization_id, "org_1002")
        self.assertEqual(resp.merchant.status, ACTIVE)

    def test_callback_without_state_or_code_or_with_unknown_state(self):
        env = self.env
        before = self.count()
        for query, needle in [("code=auth_x", "no state"),
                              ("state=", "no state"),
                              ("state=abc&code=auth_x", "unknown or already used"),
                              ("", "no state"),
                              ("state=a&state=b&code=auth_x", "repeats a parameter")]:
            status, body = env.callback(query)
            self.assertEqual(status, 400, query)
            self.assertIn(needle, body, query)
        begin = env.begin()
        status, body = env.callback("state=" + urllib.parse.quote(begin.state))
        self.assertEqual(status, 400)
        self.assertIn("no code", body)
        self.assertEqual(self.count(), before)

    def test_declined_consent_stores_nothing(self):
        env = self.env
        before = self.count()
        begin = env.begin(account_ref="shop-declined")
        query = env.consent(begin.authorize_url, org="org_1003", decision="deny")
        self.assertIn("error=access_denied", query)
        status, body = env.callback(query)
        self.assertEqual(status, 400)
        self.assertIn("declined", body)
        self.assertEqual(self.count(), before)
        # The state is spent: a forged success for it is refused.
        status, body = env.callback(f"code=auth_x&state={urllib.parse.quote(begin.state)}")
        self.assertEqual(status, 400)

    def test_error_description_is_html_escaped(self):
        status, body = self.env.callback(
            "error=server_error&error_description=%3Cscript%3Ealert(1)%3C/script%3E")
        self.assertEqual(status, 400)
        self.assertNotIn("<script>", body)
        self.assertIn("&lt;script&gt;", body)

    def test_invalid_grant_on_code_exchange_stores_nothing(self):
        env = self.env
        before = self.count()
        begin = env.begin(account_ref="shop-badcode")
        query = urllib.parse.parse_qs(env.consent(begin.authorize_url, org="org_1004"))
        forged = urllib.parse.urlencode({"code": "auth_forgedforgedforged",
                                         "state": query["state"][0]})
        status, body = env.callback(forged)
        self.assertEqual(status, 400)
        self.assertIn("rejected the authorization code", body)
        self.assertEqual(self.count(), before)
        with self.assertRaises(grpc.RpcError) as e:
            env.merchant("org_1004")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_begin_authorization_rejects_bad_input(self):
        env = self.env
        cases = [dict(account_ref="has space"), dict(scopes=["payments"]),
                 dict(scopes=["payments.delete"]), dict(locale="xx_XX"),
                 dict(account_ref="a" * 129), dict(approval_prompt=7), dict(landing_page=9)]
        for kw in cases:
            with self.assertRaises(grpc.RpcError, msg=str(kw)) as e:
                env.begin(**kw)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, str(kw))

    def test_complete_authorization_rejects_bad_input(self):
        env = self.env
        for code, state, want in [("", "x", grpc.StatusCode.INVALID_ARGUMENT),
                                  ("auth_x", "", grpc.StatusCode.INVALID_ARGUMENT),
                                  ("auth_x", "nope", grpc.StatusCode.NOT_FOUND),
                                  ("auth_x", "s" * 600, grpc.StatusCode.INVALID_ARGUMENT)]:
            with self.assertRaises(grpc.RpcError) as e:
                env.onboarding.CompleteAuthorization(onboarding_pb2.CompleteAuthorizationRequest(
                    code=code, state=state), timeout=10)
            self.assertEqual(e.exception.code(), want, (code, state))

    def test_account_ref_taken_by_another_organization(self):
        env = self.env
        env.onboard("org_1005", account_ref="shop-unique")
        begin = env.begin(account_ref="shop-unique")
        status, body = env.callback(env.consent(begin.authorize_url, org="org_1006"))
        self.assertEqual(status, 409, body)
        with self.assertRaises(grpc.RpcError) as e:
            env.merchant("org_1006")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(env.token(account_ref="shop-unique").organization_id, "org_1005")

    def test_reonboarding_replaces_the_grant(self):
        env = self.env
        first = env.onboard("org_1007", account_ref="shop-again")
        old_token = env.token(org="org_1007").access_token
        second = env.onboard("org_1007", approval_prompt=onboarding_pb2.APPROVAL_PROMPT_FORCE)
        self.assertGreater(second.generation, first.generation)
        self.assertEqual(second.account_ref, "shop-again")  # kept
        new_token = env.token(org="org_1007").access_token
        self.assertNotEqual(new_token, old_token)
        valid = env.valid_access_tokens()
        self.assertIn(new_token, valid)
        self.assertNotIn(old_token, valid)  # approval_prompt=force revoked the old grant
        # And the new grant refreshes fine.
        m = env.admin.RefreshMerchant(admin_pb2.RefreshMerchantRequest(
            organization_id="org_1007"), timeout=10)
        self.assertEqual(m.status, ACTIVE)

    def test_get_access_token_bad_input(self):
        env = self.env
        env.onboard("org_1008")
        cases = [
            (dict(org="org_99999999"), grpc.StatusCode.NOT_FOUND),
            (dict(account_ref="nobody"), grpc.StatusCode.NOT_FOUND),
            (dict(org="not-an-org"), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(org="org_../x"), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(org=""), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(account_ref="bad ref"), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(org="org_1008", min_ttl=-5), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(org="org_1008", min_ttl=100000), grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for kw, want in cases:
            with self.assertRaises(grpc.RpcError, msg=str(kw)) as e:
                env.token(**kw)
            self.assertEqual(e.exception.code(), want, str(kw))
            self.assertNotIn("access_", e.exception.details() or "")

    def test_admin_bad_input(self):
        env = self.env
        for req in [admin_pb2.ListMerchantsRequest(page_size=-1),
                    admin_pb2.ListMerchantsRequest(page_size=5000),
                    admin_pb2.ListMerchantsRequest(status=42)]:
            with self.assertRaises(grpc.RpcError) as e:
                env.admin.ListMerchants(req, timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        for org, want in [("bogus", grpc.StatusCode.INVALID_ARGUMENT),
                          ("org_404404", grpc.StatusCode.NOT_FOUND)]:
            with self.assertRaises(grpc.RpcError) as e:
                env.merchant(org)
            self.assertEqual(e.exception.code(), want)
            with self.assertRaises(grpc.RpcError) as e:
                env.admin.RefreshMerchant(admin_pb2.RefreshMerchantRequest(organization_id=org),
                                          timeout=10)
            self.assertEqual(e.exception.code(), want)

    def test_list_merchants_pages_and_filters(self):
        env = self.env
        for i in range(5):
            env.onboard(f"org_20{i}")
        seen = []
        token = ""
        while True:
            resp = env.admin.ListMerchants(admin_pb2.ListMerchantsRequest(
                page_size=2, page_token=token), timeout=10)
            self.assertLessEqual(len(resp.merchants), 2)
            seen.extend(m.organization_id for m in resp.merchants)
            token = resp.next_page_token
            if not token:
                break
        self.assertEqual(len(seen), len(set(seen)))
        for i in range(5):
            self.assertIn(f"org_20{i}", seen)
        active = env.merchants(status=ACTIVE)
        self.assertTrue(all(m.status == ACTIVE for m in active))
        self.assertEqual(env.merchants(status=NEEDS_REAUTHORIZATION), [])

    def test_health_endpoints_and_grpc_health(self):
        env = self.env
        self.assertEqual(env.http_get("/healthz")[0], 200)
        status, body = env.http_get("/readyz")
        self.assertEqual(status, 200)
        self.assertIn("ready", body)
        self.assertEqual(env.http_get("/nope")[0], 404)
        # grpc.health.v1.Health/Check with an empty request: SERVING is field 1 = 1.
        check = env.channel.unary_unary("/grpc.health.v1.Health/Check",
                                        request_serializer=None, response_deserializer=None)
        self.assertEqual(check(b"", timeout=5), b"\x08\x01")


class RefreshTest(unittest.TestCase):
    def test_refreshes_before_expiry_with_no_gap(self):
        env = Env(sim_args=["--access-token-ttl", "4"],
                  config_extra={"refresh": {"margin": 0.5, "jitter": 0.1}})
        self.addCleanup(env.close)
        env.start_daemon()
        env.onboard("org_3001")
        served = []
        # Over several lifetimes, every token handed out must be valid at Mollie when served.
        def enough_refreshes():
            tok = env.token(org="org_3001")
            self.assertIn(tok.access_token, env.valid_access_tokens())
            served.append(tok.access_token)
            return env.merchant("org_3001").refresh_count >= 3
        wait_for(enough_refreshes, timeout=30, interval=0.2, what="three refreshes")
        self.assertGreaterEqual(len(set(served)), 2)
        stats = env.stats()
        # Proactive: about one refresh per half lifetime, no storm.
        self.assertLessEqual(stats["refreshes"], 10)
        m = env.merchant("org_3001")
        self.assertEqual(m.status, ACTIVE)
        self.assertEqual(m.last_refresh_outcome, "ok")

    def test_restart_keeps_every_grant_and_reschedules(self):
        env = Env(sim_args=["--access-token-ttl", "6"],
                  config_extra={"refresh": {"margin": 0.5, "jitter": 0.1}})
        self.addCleanup(env.close)
        env.start_daemon()
        orgs = [f"org_400{i}" for i in range(3)]
        for i, org in enumerate(orgs):
            env.onboard(org, account_ref=f"shop-r{i}")
        before = {m.organization_id: m for m in env.merchants()}
        self.assertEqual(env.stop_daemon(), 0)
        env.start_daemon()
        after = {m.organization_id: m for m in env.merchants()}
        self.assertEqual(set(after), set(orgs))
        for org in orgs:
            self.assertEqual(after[org].account_ref, before[org].account_ref)
            self.assertGreaterEqual(after[org].generation, before[org].generation)
        self.assertEqual(env.token(account_ref="shop-r1").organization_id, orgs[1])
        # Rescheduled: each grant refreshes again after the restart.
        def all_refreshed():
            return all(env.merchant(o).refresh_count > before[o].refresh_count for o in orgs)
        wait_for(all_refreshed, timeout=30, interval=0.2, what="refresh after restart")
        for org in orgs:
            self.assertIn(env.token(org=org).access_token, env.valid_access_tokens())

    def _rotation(self, rotate):
        sim_args = ["--access-token-ttl", "4"] + (["--rotate-refresh-tokens"] if rotate else [])
        env = Env(sim_args=sim_args, config_extra={"refresh": {"margin": 0.5, "jitter": 0.1}})
        self.addCleanup(env.close)
        env.start_daemon()
        env.onboard("org_5001")
        wait_for(lambda: env.merchant("org_5001").refresh_count >= 2, timeout=30, interval=0.2,
                 what="two refreshes")
        truth = env.truth()
        valid_refresh = [t for t in truth["refresh_tokens"]
                         if t["organization_id"] == "org_5001" and t["valid"]]
        self.assertEqual(len(valid_refresh), 1)
        issued = [t for t in truth["refresh_tokens"] if t["organization_id"] == "org_5001"]
        self.assertEqual(len(issued) > 1, rotate)
        # After a restart the stored refresh token is still the one Mollie accepts.
        self.assertEqual(env.stop_daemon(), 0)
        env.start_daemon()
        m = env.admin.RefreshMerchant(admin_pb2.RefreshMerchantRequest(
            organization_id="org_5001"), timeout=10)
        self.assertEqual(m.status, ACTIVE)
        self.assertIn(env.token(org="org_5001").access_token, env.valid_access_tokens())

    def test_rotation_off(self):
        self._rotation(False)

    def test_rotation_on(self):
        self._rotation(True)

    def test_bad_token_replies_keep_the_old_tokens(self):
        env = Env()
        self.addCleanup(env.close)
        env.start_daemon()
        env.onboard("org_6001")
        before = env.token(org="org_6001")
        for mode in ["garbage", "missing_fields", "http_500", "http_503", "http_429", "reset"]:
            # Persistent, so that the broker's own scheduled retries fail too meanwhile.
            env.fault(mode, count=-1, retry_after=1)
            with self.assertRaises(grpc.RpcError, msg=mode) as e:
                env.admin.RefreshMerchant(admin_pb2.RefreshMerchantRequest(
                    organization_id="org_6001"), timeout=15)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE, mode)
            m = env.merchant("org_6001")
            self.assertEqual(m.status, REFRESH_FAILING, mode)
            self.assertNotEqual(m.last_refresh_outcome, "ok")
            still = env.token(org="org_6001")
            self.assertEqual(still.access_token, before.access_token, mode)
            self.assertIn(still.access_token, env.valid_access_tokens())
        # Mollie healthy again: the broker recovers by itself (scheduled retry or probe).
        env.fault("none")
        m = wait_for(lambda: (lambda m: m if m.status == ACTIVE else None)(
            env.merchant("org_6001")), timeout=30, interval=0.1, what="recovery")
        self.assertEqual(m.consecutive_failures, 0)
        self.assertNotEqual(env.token(org="org_6001").access_token, before.access_token)
        log = env.read_daemon_log()
        for secret in env.all_issued_tokens() + [env.client_secret]:
            self.assertNotIn(secret, log)

    def test_invalid_grant_on_refresh_needs_reauthorization(self):
        env = Env()
        self.addCleanup(env.close)
        env.start_daemon()
        env.onboard("org_7001")
        env.sim_request("POST", "/_sim/revoke", {"organization_id": "org_7001"})
        with self.assertRaises(grpc.RpcError) as e:
            env.admin.RefreshMerchant(admin_pb2.RefreshMerchantRequest(
                organization_id="org_7001"), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(env.merchant("org_7001").status, NEEDS_REAUTHORIZATION)
        with self.assertRaises(grpc.RpcError) as e:
            env.token(org="org_7001")
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("reauthorize", e.exception.details())
        refreshes = env.stats()["refreshes"]
        # No retry storm: a second request does not call Mollie again.
        with self.assertRaises(grpc.RpcError):
            env.admin.RefreshMerchant(admin_pb2.RefreshMerchantRequest(
                organization_id="org_7001"), timeout=10)
        self.assertEqual(env.stats()["refreshes"], refreshes)
        # Reconnecting the merchant brings it back.
        m = env.onboard("org_7001")
        self.assertEqual(m.status, ACTIVE)
        self.assertIn(env.token(org="org_7001").access_token, env.valid_access_tokens())

    def test_invalid_client_marks_no_merchant_lost(self):
        env = Env()
        self.addCleanup(env.close)
        env.start_daemon()
        env.onboard("org_8001")
        env.fault("invalid_client", count=1)
        with self.assertRaises(grpc.RpcError) as e:
            env.admin.RefreshMerchant(admin_pb2.RefreshMerchantRequest(
                organization_id="org_8001"), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertNotEqual(env.merchant("org_8001").status, NEEDS_REAUTHORIZATION)
        self.assertIn("invalid_client", env.read_daemon_log())

    def test_min_ttl_forces_a_refresh_that_concurrent_callers_share(self):
        env = Env(sim_args=["--access-token-ttl", "20"])
        self.addCleanup(env.close)
        env.start_daemon()
        env.onboard("org_9001")
        # From now on Mollie hands out 1-hour tokens; the current one has < 20 s left.
        env.sim_request("POST", "/_sim/config", {"access_token_ttl_seconds": 3600})
        before = env.stats()["refreshes"]
        old = env.token(org="org_9001").access_token
        futures = [env.tokens.GetAccessToken.future(_req("org_9001", 600), timeout=15)
                   for _ in range(20)]
        tokens = {f.result().access_token for f in futures}
        self.assertEqual(len(tokens), 1)
        self.assertNotEqual(tokens.pop(), old)
        self.assertEqual(env.stats()["refreshes"] - before, 1)


def _req(org, min_ttl):
    from harness import token_pb2, duration_pb2
    r = token_pb2.GetAccessTokenRequest(organization_id=org)
    r.min_ttl.CopyFrom(duration_pb2.Duration(seconds=min_ttl))
    return r


class StartupTest(unittest.TestCase):
    def setUp(self):
        self.env = Env()
        self.addCleanup(self.env.close)

    def run_daemon(self, config_path, timeout=20):
        return subprocess.run([BROKERD, "--config", config_path], capture_output=True,
                              text=True, timeout=timeout)

    def test_missing_config_file(self):
        r = self.run_daemon("/nonexistent/cb.toml")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/cb.toml does not exist", r.stderr)

    def test_missing_or_unreadable_secret_file(self):
        path = self.env.write_config(mollie={"client_secret_file": "/nonexistent/secret"})
        r = self.run_daemon(path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/secret", r.stderr)

    def test_missing_or_bad_key_file(self):
        path = self.env.write_config(storage={"key_file": "/nonexistent/keys"})
        r = self.run_daemon(path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/keys", r.stderr)
        with open(self.env.key_file, "w") as f:
            f.write("k1 nothex\n")
        r = self.run_daemon(self.env.write_config())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(self.env.key_file, r.stderr)

    def test_bad_config_value(self):
        path = self.env.write_config(refresh={"margin": 7})
        r = self.run_daemon(path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("refresh.margin", r.stderr)

    def test_wrong_key_on_restart_refuses_and_keeps_data(self):
        env = self.env
        env.start_daemon()
        env.onboard("org_9101")
        token = env.token(org="org_9101").access_token
        self.assertEqual(env.stop_daemon(), 0)
        with open(env.key_file) as f:
            good = f.read()
        with open(env.key_file, "w") as f:
            f.write("k1 " + "ab" * 32 + "\n")
        r = self.run_daemon(env.write_config())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not match", r.stderr)
        with open(env.key_file, "w") as f:
            f.write(good)
        env.start_daemon()
        self.assertEqual(env.merchant("org_9101").status, ACTIVE)
        self.assertEqual(env.token(org="org_9101").access_token, token)

    def test_port_in_use(self):
        env = self.env
        env.start_daemon()
        other_data = os.path.join(env.dir, "data2")
        path = env.write_config(server={"http_listen": f"127.0.0.1:{env.http_port}"},
                                storage={"data_dir": other_data})
        r = self.run_daemon(path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(str(env.http_port), r.stderr)

    def test_second_daemon_on_same_data_dir_refuses(self):
        env = self.env
        env.start_daemon()
        r = self.run_daemon(env.write_config())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("in use", r.stderr)


class SecretsTest(unittest.TestCase):
    def test_no_token_in_plain_text_on_disk_or_in_logs(self):
        env = Env(sim_args=["--access-token-ttl", "4", "--rotate-refresh-tokens"],
                  config_extra={"refresh": {"margin": 0.5, "jitter": 0.1}})
        self.addCleanup(env.close)
        env.start_daemon()
        for i in range(3):
            env.onboard(f"org_990{i}", account_ref=f"shop-s{i}")
        wait_for(lambda: all(env.merchant(f"org_990{i}").refresh_count >= 1 for i in range(3)),
                 timeout=30, interval=0.2, what="refreshes")
        self.assertEqual(env.stop_daemon(), 0)
        secrets = env.all_issued_tokens() + [env.client_secret]
        self.assertGreater(len(secrets), 6)
        self.assertEqual(files_containing(env.data_dir, secrets), [])
        log = env.read_daemon_log()
        for s in secrets:
            self.assertNotIn(s, log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
