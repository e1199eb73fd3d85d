#!/usr/bin/python3
"""ProxyService against the real daemon and the real simulator: payments created exactly once
across lost replies, keyless POSTs never replayed, paged lists streamed whole and in order, a 401
mid-stream answered by one refresh, Mollie's error bodies passed through unchanged, and every kind
of bad request refused before anything reaches Mollie."""
import json
import threading
import time
import unittest
import urllib.request

import grpc

from harness import Env, admin_pb2, proxy_pb2, wait_for

SCOPES = ["organizations.read", "payments.read", "payments.write", "profiles.read",
          "refunds.write"]
AMOUNT = {"currency": "EUR", "value": "10.00"}


def payment_body(profile_id, description="Order 42"):
    return json.dumps({"amount": AMOUNT, "description": description,
                       "redirectUrl": "https://shop.example/return",
                       "profileId": profile_id}).encode()


class ProxyCase(unittest.TestCase):
    ORG = "org_5100"
    CONFIG = {}

    @classmethod
    def setUpClass(cls):
        cls.env = Env(config_extra={"proxy": {"retry_initial_ms": 20, "retry_max_ms": 200,
                                              **cls.CONFIG}})
        cls.env.start_daemon()
        cls.env.onboard(cls.ORG, scopes=SCOPES)

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def setUp(self):
        self.env.sim_request("POST", "/_sim/faults", {"target": "all", "mode": "none"})
        self.env.sim_request("POST", "/_sim/api_log/clear", {})

    def call(self, method, path, org=None, timeout=15, **kw):
        req = proxy_pb2.ProxyRequest(organization_id=org or self.ORG, method=method, path=path,
                                     **kw)
        return self.env.proxy.Call(req, timeout=timeout)

    def rpc_error(self, fn):
        with self.assertRaises(grpc.RpcError) as e:
            fn()
        return e.exception

    def profile_id(self):
        r = self.call("GET", "/v2/profiles")
        self.assertEqual(r.status, 200, r.body)
        return json.loads(r.body)["_embedded"]["profiles"][0]["id"]

    def sim_payments(self):
        return self.env.sim_request("GET", f"/_sim/payments?organization_id={self.ORG}")["payments"]

    def api_log(self):
        return self.env.sim_request("GET", "/_sim/api_log")["entries"]

    def fault(self, **body):
        body.setdefault("target", "api")
        return self.env.sim_request("POST", "/_sim/faults", body)

    def direct(self, method, path, token):
        """The same request sent straight to the simulator with the merchant's token."""
        req = urllib.request.Request(self.env.sim_url(path), method=method,
                                     headers={"Authorization": "Bearer " + token})
        try:
            with urllib.request.urlopen(req, context=self.env.ssl, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


class PaymentsTest(ProxyCase):
    def test_payment_created_once_although_the_reply_was_lost(self):
        profile = self.profile_id()
        before = len(self.sim_payments())
        self.fault(mode="reply_then_drop", method="POST", path_prefix="/v2/payments", count=1)
        r = self.call("POST", "/v2/payments", body=payment_body(profile), testmode=True,
                      idempotency_key="order-42-attempt")
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.attempts, 2)
        headers = {h.name.lower(): h.value for h in r.headers}
        self.assertEqual(headers.get("idempotent-replayed"), "true")
        created = json.loads(r.body)
        self.assertEqual(created["mode"], "test")
        self.assertEqual(created["profileId"], profile)
        payments = self.sim_payments()
        self.assertEqual(len(payments), before + 1)
        self.assertEqual([p["id"] for p in payments if p["idempotency_key"] == "order-42-attempt"],
                         [created["id"]])
        posts = [e for e in self.api_log() if e["method"] == "POST"]
        self.assertEqual(len(posts), 2)
        self.assertTrue(posts[1]["replayed"])

    def test_keyless_post_is_not_retried_after_sending(self):
        profile = self.profile_id()
        before = len(self.sim_payments())
        self.fault(mode="reply_then_drop", method="POST", path_prefix="/v2/payments", count=1)
        e = self.rpc_error(lambda: self.call("POST", "/v2/payments", body=payment_body(profile),
                                             testmode=True))
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("not retried", e.details())
        # Mollie did create it; the broker did not create a second one.
        self.assertEqual(len(self.sim_payments()), before + 1)
        self.assertEqual(len([x for x in self.api_log() if x["method"] == "POST"]), 1)

    def test_keyless_post_answered_503_is_passed_through_not_retried(self):
        profile = self.profile_id()
        self.fault(mode="http_503", method="POST", count=1)
        r = self.call("POST", "/v2/payments", body=payment_body(profile), testmode=True)
        self.assertEqual(r.status, 503)
        self.assertEqual(r.attempts, 1)
        self.assertEqual(json.loads(r.body)["status"], 503)

    def test_derived_idempotency_key_makes_a_callers_retry_harmless(self):
        profile = self.profile_id()
        before = len(self.sim_payments())
        kw = dict(body=payment_body(profile, "derived"), testmode=True,
                  derive_idempotency_key=True, request_id="checkout-991")
        first = self.call("POST", "/v2/payments", **kw)
        again = self.call("POST", "/v2/payments", **kw)
        self.assertEqual(first.status, 201)
        self.assertEqual(json.loads(first.body)["id"], json.loads(again.body)["id"])
        self.assertEqual(len(self.sim_payments()), before + 1)
        e = self.rpc_error(lambda: self.call("POST", "/v2/payments", body=payment_body(profile),
                                             derive_idempotency_key=True))
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_testmode_isolation_and_get_by_id(self):
        profile = self.profile_id()
        created = json.loads(self.call("POST", "/v2/payments", body=payment_body(profile),
                                       testmode=True, idempotency_key="iso-1").body)
        got = self.call("GET", f"/v2/payments/{created['id']}", testmode=True)
        self.assertEqual(got.status, 200)
        self.assertEqual(json.loads(got.body)["id"], created["id"])
        wrong = self.call("GET", f"/v2/payments/{created['id']}")
        self.assertEqual(wrong.status, 404)
        self.assertIn("wrong mode", json.loads(wrong.body)["detail"])

    def test_get_retries_429_honouring_retry_after_and_5xx(self):
        self.fault(mode="http_429", method="GET", retry_after_seconds=1, count=1)
        r = self.call("GET", "/v2/profiles")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.attempts, 2)
        log = [e for e in self.api_log() if e["path"] == "/v2/profiles"]
        self.assertEqual([e["status"] for e in log], [429, 200])
        self.assertGreaterEqual(log[1]["time_ms"] - log[0]["time_ms"], 1000)
        self.fault(mode="http_502", method="GET", count=2)
        r = self.call("GET", "/v2/profiles")
        self.assertEqual((r.status, r.attempts), (200, 3))
        # Retries exhausted: Mollie's last answer is the result.
        self.fault(mode="http_503", method="GET", count=-1)
        r = self.call("GET", "/v2/profiles")
        self.assertEqual((r.status, r.attempts), (503, 3))

    def test_connection_reset_on_get_is_retried(self):
        self.fault(mode="reset", method="GET", count=1)
        r = self.call("GET", "/v2/profiles")
        self.assertEqual((r.status, r.attempts), (200, 2))


    def test_zz_no_token_in_the_daemon_log_after_proxied_calls(self):
        # Runs last in this class (alphabetical): after creates, replays, resets and retries.
        self.call("GET", "/v2/profiles")
        self.fault(mode="reset", method="GET", count=-1)
        e = self.rpc_error(lambda: self.call("GET", "/v2/profiles"))
        issued = self.env.all_issued_tokens()
        self.assertTrue(issued)
        log = self.env.read_daemon_log()
        for token in issued:
            self.assertNotIn(token, log)
            self.assertNotIn(token, e.details())


class PassThroughTest(ProxyCase):
    def test_hal_errors_reach_the_caller_unchanged(self):
        token = self.env.token(org=self.ORG).access_token
        for path in ("/v2/profiles/me", "/v2/payments/tr_doesnotexist", "/v2/nothing-here"):
            r = self.call("GET", path)
            status, body = self.direct("GET", path, token)
            self.assertEqual((r.status, r.body), (status, body), path)
            self.assertIn(r.status, (403, 404))
            ctype = {h.name.lower(): h.value for h in r.headers}["content-type"]
            self.assertIn("hal+json", ctype)

    def test_403_for_a_missing_scope_is_passed_through(self):
        org = "org_5101"
        self.env.onboard(org, scopes=["organizations.read"])
        token = self.env.token(org=org).access_token
        r = self.call("GET", "/v2/payments", org=org)
        status, body = self.direct("GET", "/v2/payments", token)
        self.assertEqual(r.status, 403)
        self.assertEqual((r.status, r.body), (status, body))
        self.assertEqual(json.loads(r.body)["title"], "Forbidden")

    def test_non_json_200_body_is_returned_as_sent(self):
        self.fault(mode="garbage", method="GET", count=1)
        r = self.call("GET", "/v2/profiles")
        self.assertEqual(r.status, 200)
        self.assertIn(b"not JSON", r.body)

    def test_broken_replies_are_clear_errors(self):
        self.fault(mode="truncated", method="GET", count=-1)
        e = self.rpc_error(lambda: self.call("GET", "/v2/profiles"))
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("cut off", e.details())
        self.fault(mode="oversized", method="GET", count=-1)
        e = self.rpc_error(lambda: self.call("GET", "/v2/profiles"))
        self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("larger than", e.details())

    def test_deadline_shorter_than_a_round_trip(self):
        self.fault(mode="delay", delay_ms=2000, method="GET", count=1)
        e = self.rpc_error(lambda: self.call("GET", "/v2/profiles", timeout=0.3))
        self.assertEqual(e.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # The pool is not poisoned: the next call works.
        self.assertEqual(self.call("GET", "/v2/profiles").status, 200)

    def test_stats_count_proxied_calls(self):
        before = self.env.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=5)
        self.call("GET", "/v2/profiles")
        self.call("GET", "/v2/payments/tr_nope")
        after = self.env.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=5)
        self.assertEqual(after.proxy_calls - before.proxy_calls, 2)
        self.assertEqual(after.proxy_upstream_2xx - before.proxy_upstream_2xx, 1)
        self.assertEqual(after.proxy_upstream_4xx - before.proxy_upstream_4xx, 1)
        self.assertGreaterEqual(after.proxy_connections_opened, 1)
        # Keep-alive: two calls in a row did not need two new connections.
        self.assertLessEqual(after.proxy_connections_opened - before.proxy_connections_opened, 1)


class BadInputTest(ProxyCase):
    def assert_invalid(self, what, **kw):
        kw.setdefault("method", "GET")
        kw.setdefault("path", "/v2/payments")
        self.env.sim_request("POST", "/_sim/api_log/clear", {})
        e = self.rpc_error(lambda: self.env.proxy.Call(
            proxy_pb2.ProxyRequest(organization_id=self.ORG, **kw), timeout=10))
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT, f"{kw}: {e.details()}")
        self.assertIn(what, e.details())
        self.assertEqual(self.api_log(), [], "nothing may reach Mollie")

    def test_path_tricks(self):
        for path, what in [("/v2/../oauth2/tokens", ".."), ("/oauth2/tokens", "/v2/"),
                           ("https://evil.example/v2/payments", "absolute URL"),
                           ("/v2/payments%2F..%2Foauth2", "percent-encode"),
                           ("/v2/%2e%2e/x", "percent-encode"), ("/v2//payments", "empty"),
                           ("/v2/payments?x=1", "query"), ("/v2/pay\r\nments", "control"),
                           ("", "required")]:
            self.assert_invalid(what, path=path)

    def test_methods_headers_and_bodies(self):
        self.assert_invalid("not one of", method="TRACE")
        self.assert_invalid("required", method="")
        self.assert_invalid("GET request has no body", body=b"{}")
        self.assert_invalid("not valid JSON", method="POST", body=b"amount=10",
                            headers=[proxy_pb2.HttpHeader(name="Content-Type",
                                                          value="application/json")])
        self.assert_invalid("may not be set",
                            headers=[proxy_pb2.HttpHeader(name="Authorization",
                                                          value="Bearer access_x")])
        self.assert_invalid("may not be set", headers=[proxy_pb2.HttpHeader(name="Host",
                                                                             value="evil")])
        self.assert_invalid("CR, LF", headers=[proxy_pb2.HttpHeader(
            name="Accept", value="x\r\nAuthorization: Bearer y")])
        self.assert_invalid("not allowed", headers=[proxy_pb2.HttpHeader(name="X-Forwarded-For",
                                                                          value="1.2.3.4")])
        self.assert_invalid("max_request_body_bytes", method="POST",
                            body=json.dumps({"d": "x" * (1 << 20)}).encode())
        self.assert_invalid("idempotency_key", method="POST", body=b"{}",
                            idempotency_key="has space")
        self.assert_invalid("control", query=[proxy_pb2.QueryParam(name="a", value="b\nc")])
        self.assert_invalid("not both", method="POST", body=b"{}", idempotency_key="k1",
                            derive_idempotency_key=True, request_id="r1")
        self.assert_invalid("more than once", headers=[
            proxy_pb2.HttpHeader(name="X-Request-Id", value="a"),
            proxy_pb2.HttpHeader(name="X-Request-Id", value="b")])
        self.assert_invalid("';'", path="/v2/payments/..;/oauth2")



class BigBodyTest(ProxyCase):
    ORG = "org_5130"
    CONFIG = {"max_request_body_bytes": 4718592}  # 4.5 MiB, above gRPC's default 4 MiB

    def test_body_limit_is_the_proxys_not_grpcs(self):
        # Over the configured 4.5 MiB but under the gRPC limit the daemon derives from it: the
        # proxy's own clear refusal, not gRPC's generic "message larger than max".
        e = self.rpc_error(lambda: self.env.proxy.Call(proxy_pb2.ProxyRequest(
            organization_id=self.ORG, method="POST", path="/v2/payments",
            body=json.dumps({"d": "x" * 4800000}).encode()), timeout=20))
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("max_request_body_bytes", e.details())
        # A 4.2 MiB body is within the limit and reaches Mollie (which refuses it, 413 in the
        # simulator, or drops the connection).
        try:
            r = self.env.proxy.Call(proxy_pb2.ProxyRequest(
                organization_id=self.ORG, method="POST", path="/v2/payments",
                body=json.dumps({"d": "x" * 4400000}).encode()), timeout=20)
            self.assertGreaterEqual(r.status, 400)
        except grpc.RpcError as err:
            self.assertEqual(err.code(), grpc.StatusCode.UNAVAILABLE, err.details())

    def test_merchant_errors(self):
        e = self.rpc_error(lambda: self.call("GET", "/v2/payments", org="org_404404"))
        self.assertEqual(e.code(), grpc.StatusCode.NOT_FOUND)
        e = self.rpc_error(lambda: self.call("GET", "/v2/payments", org="not-an-org"))
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
        e = self.rpc_error(lambda: self.env.proxy.Call(
            proxy_pb2.ProxyRequest(method="GET", path="/v2/payments"), timeout=10))
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_merchant_that_must_reauthorize(self):
        org = "org_5102"
        self.env.onboard(org, scopes=SCOPES)
        self.env.sim_request("POST", "/_sim/revoke", {"organization_id": org})
        with self.assertRaises(grpc.RpcError):
            self.env.admin.RefreshMerchant(admin_pb2.RefreshMerchantRequest(organization_id=org),
                                           timeout=10)
        e = self.rpc_error(lambda: self.call("GET", "/v2/payments", org=org))
        self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)


class PoolTest(ProxyCase):
    ORG = "org_5110"
    CONFIG = {"max_connections": 2}

    def test_concurrent_calls_share_a_bounded_pool(self):
        stats0 = self.env.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=5)
        # Requests another test left hanging at the simulator still count there.
        baseline = self.env.sim_request("POST", "/_sim/stats/reset", {})["api_requests_in_flight"]
        self.fault(mode="delay", delay_ms=300, method="GET", count=6)
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            self.call("GET", "/v2/profiles").status)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        self.assertEqual(results, [200] * 6)
        stats = self.env.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=5)
        self.assertLessEqual(stats.proxy_connections_opened - stats0.proxy_connections_opened, 2)
        self.assertLessEqual(stats.proxy_open_connections, 2)
        self.assertLessEqual(self.env.stats()["max_concurrent_api_requests"], baseline + 2)

    def test_a_caller_waiting_for_a_connection_gives_up_at_its_deadline(self):
        # Both connections are held by slow calls; a third caller with a short deadline fails
        # cleanly, and once the slow calls are done the pool serves again.
        self.fault(mode="delay", delay_ms=1500, method="GET", count=2)
        slow = [threading.Thread(target=lambda: self.call("GET", "/v2/profiles"))
                for _ in range(2)]
        for t in slow:
            t.start()
        wait_for(lambda: len(self.api_log()) >= 2, what="two slow calls at the simulator")
        e = self.rpc_error(lambda: self.call("GET", "/v2/profiles", timeout=0.3))
        self.assertEqual(e.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        for t in slow:
            t.join(timeout=30)
        self.assertEqual(self.call("GET", "/v2/profiles").status, 200)


    def test_a_cancelled_call_gives_its_connection_back_at_once(self):
        # Two calls hang at Mollie and hold both connections; their callers cancel. Without
        # cancellation reaching the upstream request the pool would stay full for 30 s.
        self.fault(mode="hang", method="GET", count=2)
        futures = [self.env.proxy.Call.future(proxy_pb2.ProxyRequest(
            organization_id=self.ORG, method="GET", path="/v2/profiles")) for _ in range(2)]
        wait_for(lambda: len(self.api_log()) >= 2, what="two hanging calls at the simulator")
        for f in futures:
            f.cancel()
        r = self.call("GET", "/v2/profiles", timeout=5)
        self.assertEqual(r.status, 200)
        stats = self.env.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=5)
        self.assertLessEqual(stats.proxy_open_connections, 2)


class ShutdownTest(ProxyCase):
    ORG = "org_5120"

    def test_sigterm_does_not_wait_for_a_hanging_upstream_call(self):
        self.fault(mode="hang", method="GET", count=1)
        future = self.env.proxy.Call.future(proxy_pb2.ProxyRequest(
            organization_id=self.ORG, method="GET", path="/v2/profiles"), timeout=60)
        wait_for(lambda: len(self.api_log()) >= 1, what="the hanging call at the simulator")
        started = time.monotonic()
        # shutdown_grace_seconds is 5 in the harness; the upstream request would hang 30 s.
        self.assertEqual(self.env.stop_daemon(timeout=20), 0)
        self.assertLess(time.monotonic() - started, 15)
        with self.assertRaises(grpc.RpcError):
            future.result(timeout=5)


class PagedTest(ProxyCase):
    def seed(self, count, mode="test"):
        return self.env.sim_request("POST", "/_sim/payments/seed", {
            "organization_id": self.ORG, "count": count, "mode": mode, "status": "paid"})

    def pages(self, timeout=30, **kw):
        req = proxy_pb2.ProxyPagedRequest(organization_id=self.ORG, path="/v2/payments", **kw)
        return list(self.env.proxy.CallPaged(req, timeout=timeout))

    def expected_ids(self):
        # Newest first, as Mollie lists them.
        return [p["id"] for p in reversed(self.sim_payments()) if p["mode"] == "test"]

    def test_three_pages_stream_every_item_once_in_order(self):
        self.seed(13)
        pages = self.pages(query=[proxy_pb2.QueryParam(name="limit", value="5")], testmode=True)
        expected = self.expected_ids()
        self.assertGreaterEqual(len(expected), 13)
        ids = [json.loads(item)["id"] for page in pages for item in page.items]
        self.assertEqual(ids, expected)
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual([p.page_number for p in pages], list(range(1, len(pages) + 1)))
        self.assertGreaterEqual(len(pages), 3)
        self.assertTrue(all(p.status == 200 and p.embedded_key == "payments" for p in pages))

    def test_max_items_cuts_the_stream(self):
        self.seed(12)
        pages = self.pages(query=[proxy_pb2.QueryParam(name="limit", value="5")], testmode=True,
                           max_items=7)
        ids = [json.loads(item)["id"] for page in pages for item in page.items]
        self.assertEqual(ids, self.expected_ids()[:7])
        self.assertEqual(len(pages), 2)

    def test_expired_token_mid_stream_is_refreshed_transparently(self):
        self.seed(12)
        expected = self.expected_ids()
        # Page 1 is processed at once but its reply held back; meanwhile Mollie's clock passes
        # the access token's expiry (the broker's does not), so page 2 meets a 401.
        self.fault(mode="delay", delay_ms=1500, method="GET", path_prefix="/v2/payments",
                   count=1)
        refreshes_before = self.env.admin.GetStats(admin_pb2.GetStatsRequest(),
                                                   timeout=5).proxy_token_refreshes
        result = {}

        def run():
            try:
                result["pages"] = self.pages(
                    query=[proxy_pb2.QueryParam(name="limit", value="5")], testmode=True)
            except grpc.RpcError as e:
                result["error"] = e
        t = threading.Thread(target=run)
        t.start()
        wait_for(lambda: any(e["path"] == "/v2/payments" for e in self.api_log()),
                 what="page 1 reached the simulator")
        self.env.sim_request("POST", "/_sim/clock", {"advance_seconds": 7200})
        t.join(timeout=30)
        self.assertNotIn("error", result)
        ids = [json.loads(item)["id"] for page in result["pages"] for item in page.items]
        self.assertEqual(ids, expected)
        statuses = [e["status"] for e in self.api_log() if e["path"] == "/v2/payments"]
        self.assertIn(401, statuses)
        self.assertEqual(statuses[-1], 200)
        after = self.env.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=5)
        self.assertEqual(after.proxy_token_refreshes - refreshes_before, 1)

    def test_error_page_ends_the_stream_with_mollies_body(self):
        self.fault(mode="http_503", method="GET", count=-1)
        pages = self.pages()
        self.assertEqual(len(pages), 1)
        self.assertEqual(pages[0].status, 503)
        self.assertEqual(json.loads(pages[0].body)["status"], 503)
        self.assertEqual(list(pages[0].items), [])

    def test_not_a_list_and_bad_requests(self):
        self.fault(mode="garbage", method="GET", count=1)
        with self.assertRaises(grpc.RpcError) as e:
            self.pages()
        self.assertEqual(e.exception.code(), grpc.StatusCode.INTERNAL)
        with self.assertRaises(grpc.RpcError) as e:
            list(self.env.proxy.CallPaged(proxy_pb2.ProxyPagedRequest(
                organization_id=self.ORG, path="/v2/../oauth2/tokens"), timeout=10))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as e:
            list(self.env.proxy.CallPaged(proxy_pb2.ProxyPagedRequest(
                organization_id=self.ORG, path="/v2/payments", max_items=-1), timeout=10))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


if __name__ == "__main__":
    unittest.main()
