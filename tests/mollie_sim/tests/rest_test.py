#!/usr/bin/python3
"""End-to-end test of mollie-sim's REST API (/v2/) over real HTTPS (stdlib only).

Covers what tests/mollie_sim/README.md promises for the REST slice: authentication and scopes,
profiles, permissions, onboarding, payments (create, get, list with cursor paging), refunds,
test/live isolation, Idempotency-Key (replay, reuse 400, in-flight 409, expiry), the REST faults
and their filters, and the control calls about payments and the API log.
Uses the helpers of sim_test.py. Prints "N passed, M failed" last; exits non-zero on a failure.
"""

import argparse
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import sim_test as st
from sim_test import check, fixture, wait_for

PAYMENT_ID = re.compile(r"^tr_[A-Za-z0-9]{10}$")
REFUND_ID = re.compile(r"^re_[A-Za-z0-9]{10}$")
ALL_SCOPES = ("organizations.read payments.read payments.write refunds.read refunds.write "
              "profiles.read onboarding.read")
TRANSPORT_ERRORS = (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError)


class Client:
    """Calls /v2/ with one organization's access token."""

    def __init__(self, sim, org, scope=ALL_SCOPES):
        self.sim = sim
        self.org = org
        g = sim.grant(sim_org=org, scope=scope)
        self.token = g["access_token"]
        self.refresh_token = g["refresh_token"]
        self.profile = "pfl_" + org[4:]

    def renew(self):
        r = self.sim.refresh(self.refresh_token)
        assert r.status == 200, r.body
        self.token = r.json()["access_token"]

    def call(self, method, path, body=None, key=None, headers=None, form=False, raw=None,
             content_type=None, conn=None, timeout=5.0):
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if key is not None:
            h["Idempotency-Key"] = key
        data = raw
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body)
                h["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body)
                h["Content-Type"] = "application/json"
        if content_type is not None:
            h["Content-Type"] = content_type
        h.update(headers or {})
        return self.sim.call(method, path, data, h, timeout=timeout, conn=conn)

    def pay(self, key=None, **fields):
        return self.call("POST", "/v2/payments", payment_body(self.profile, **fields), key=key)


def payment_body(profile, value="10.00", currency="EUR", **extra):
    body = {"amount": {"currency": currency, "value": value}, "description": "Order 12345",
            "redirectUrl": "https://shop.example/return", "profileId": profile}
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def is_hal_error(r, status, field=None):
    try:
        body = r.json()
    except ValueError:
        return False
    return (r.status == status and r.header("Content-Type").startswith("application/hal+json")
            and body.get("status") == status and body.get("title") == TITLES[status]
            and isinstance(body.get("detail"), str) and body["detail"]
            and body.get("_links", {}).get("documentation", {}).get("type") == "text/html"
            and body.get("field") == field)


TITLES = {400: "Bad Request", 401: "Unauthorized Request", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 415: "Unsupported Media Type",
          422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
          502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def control_status(sim, method, path, payload=None):
    body = json.dumps(payload) if payload is not None else None
    return sim.call(method, "/_sim/" + path, body,
                    {"Content-Type": "application/json"} if body else {}).status


def sim_payments(sim, org=None):
    path = "payments" + (f"?organization_id={org}" if org else "")
    return sim.control("GET", path)["payments"]


def fault(sim, **payload):
    return sim.control("POST", "faults", payload)


def relative(href):
    parts = urllib.parse.urlsplit(href)
    return parts.path + ("?" + parts.query if parts.query else "")


def transport_failure(fn):
    try:
        fn()
    except TRANSPORT_ERRORS:
        return True
    return False


# ------------------------------------------------------------------------------------------


def test_auth_routing_scopes(sim):
    a = Client(sim, "org_route")
    unauthorized = fixture("error_unauthorized.json")
    for path in ("/v2/payments", "/v2/profiles", "/v2/permissions", "/v2/nowhere"):
        r = sim.call("GET", path)
        check(f"{path} without a token: 401 exact body", r.status == 401
              and r.json() == unauthorized, (r.status, r.body))
    r = sim.call("POST", "/v2/payments", json.dumps(payment_body(a.profile)),
                 {"Authorization": "Bearer access_unknown", "Content-Type": "application/json"})
    check("POST /v2/payments with an unknown token: 401", r.status == 401
          and r.json() == unauthorized)

    r = a.call("GET", "/v2/customers")
    check("unknown /v2/ path: 404 HAL", is_hal_error(r, 404), r.body)
    r = a.call("GET", "/v2/payments/")
    check("empty payment id: 404 HAL", is_hal_error(r, 404), r.body)
    for method, path, allow in (("DELETE", "/v2/payments", "GET, POST"),
                                ("PUT", "/v2/payments/tr_xxxxxxxxxx", "GET"),
                                ("GET", "/v2/payments/tr_xxxxxxxxxx/refunds", "POST"),
                                ("POST", "/v2/profiles", "GET"),
                                ("POST", "/v2/permissions", "GET"),
                                ("PATCH", "/v2/onboarding/me", "GET"),
                                ("POST", "/v2/organizations/me", "GET")):
        r = a.call(method, path)
        check(f"{method} {path}: 405 Allow {allow}", is_hal_error(r, 405)
              and r.header("Allow") == allow, (r.status, r.headers, r.body))

    narrow = Client(sim, "org_narrow", scope="organizations.read")
    for method, path, scope in (("GET", "/v2/payments", "payments.read"),
                                ("GET", "/v2/payments/tr_xxxxxxxxxx", "payments.read"),
                                ("POST", "/v2/payments", "payments.write"),
                                ("POST", "/v2/payments/tr_xxxxxxxxxx/refunds", "refunds.write"),
                                ("GET", "/v2/profiles", "profiles.read"),
                                ("GET", "/v2/profiles/pfl_narrow", "profiles.read"),
                                ("GET", "/v2/onboarding/me", "onboarding.read")):
        r = narrow.call(method, path, body={} if method == "POST" else None)
        check(f"{method} {path} without {scope}: 403 naming it", is_hal_error(r, 403)
              and scope in r.json()["detail"], r.body)
    check("permissions need no scope", narrow.call("GET", "/v2/permissions").status == 200)
    check("organizations/me still 200", narrow.call("GET", "/v2/organizations/me").status == 200)

    # An expired or revoked token is rejected by the REST endpoints like by organizations/me.
    sim.control("POST", "config", {"access_token_ttl_seconds": 0})
    expired = sim.refresh(a.refresh_token).json()["access_token"]
    sim.control("POST", "config", {"access_token_ttl_seconds": 3600})
    r = sim.call("GET", "/v2/payments", headers={"Authorization": f"Bearer {expired}"})
    check("expired token on /v2/payments: 401", r.status == 401 and r.json() == unauthorized)
    revoked = Client(sim, "org_route_revoked")
    sim.control("POST", "revoke", {"organization_id": "org_route_revoked"})
    check("revoked grant on /v2/profiles: 401", revoked.call("GET", "/v2/profiles").status == 401)


def test_profiles_permissions_onboarding(sim):
    sim.control("POST", "organizations", {"id": "org_prof", "name": "Prof B.V.",
                                          "email": "info@prof.example"})
    a = Client(sim, "org_prof")
    base = f"https://localhost:{sim.port}/v2/"
    r = a.call("GET", "/v2/profiles")
    want = fixture("profiles_list.json")
    body = r.json()
    check("profiles: 200 hal+json", r.status == 200
          and r.header("Content-Type").startswith("application/hal+json"), r.body)
    check("profiles: list shape", set(body) == set(want) and body["count"] == 1
          and len(body["_embedded"]["profiles"]) == 1
          and set(body["_links"]) == set(want["_links"])
          and body["_links"]["self"] == {"href": base + "profiles?limit=50",
                                         "type": "application/hal+json"}
          and body["_links"]["previous"] is None and body["_links"]["next"] is None, body)
    p = body["_embedded"]["profiles"][0]
    fp = want["_embedded"]["profiles"][0]
    check("profile: the organization's one profile",
          p["resource"] == "profile" and p["id"] == "pfl_prof" and p["name"] == "Prof B.V. shop"
          and p["mode"] == "live" and p["status"] == "verified"
          and p["email"] == "info@prof.example" and p["website"].startswith("https://")
          and set(p) == set(fp) and set(p["_links"]) >= set(fp["_links"])
          and p["_links"]["self"]["href"] == base + "profiles/pfl_prof", p)
    r = a.call("GET", "/v2/profiles?limit=5&from=pfl_prof&x=1")
    check("profiles: from and other parameters kept in self", r.status == 200
          and r.json()["_links"]["self"]["href"] == base + "profiles?from=pfl_prof&limit=5&x=1",
          r.body)
    check("profiles: limit 0: 400 field limit",
          is_hal_error(a.call("GET", "/v2/profiles?limit=0"), 400, "limit"))
    check("profiles: foreign from: 400 field from",
          is_hal_error(a.call("GET", "/v2/profiles?from=pfl_other"), 400, "from"))
    r = a.call("GET", "/v2/profiles/pfl_prof")
    check("profile by id", r.status == 200 and r.json() == p, r.body)
    Client(sim, "org_prof_other")
    check("another organization's profile: 404",
          is_hal_error(a.call("GET", "/v2/profiles/pfl_prof_other"), 404))
    r = a.call("GET", "/v2/profiles/me")
    check("profiles/me with an OAuth token: 403 API-key-only", is_hal_error(r, 403)
          and "only available with an API key" in r.json()["detail"], r.body)

    narrow = Client(sim, "org_perm", scope="payments.read organizations.read")
    r = narrow.call("GET", "/v2/permissions")
    body = r.json()
    want = fixture("permissions_list.json")
    items = body["_embedded"]["permissions"]
    check("permissions: every known scope, not paginated", r.status == 200
          and set(body) == set(want) and body["count"] == 61 == len(items)
          and set(body["_links"]) == {"self", "documentation"}, body.get("count"))
    check("permissions: item shape like the fixture",
          all(set(i) == set(want["_embedded"]["permissions"][0]) and i["resource"] == "permission"
              and i["description"] and i["_links"]["self"]["href"]
              == f"https://localhost:{sim.port}/v2/permissions/{i['id']}" for i in items))
    granted = sorted(i["id"] for i in items if i["granted"])
    check("permissions: granted per the token's scope",
          granted == ["organizations.read", "payments.read"], granted)
    byid = {i["id"]: i for i in items}
    check("permissions: Mollie's descriptions", byid["payments.read"]["description"]
          == "View your payments" and byid["payments.write"]["description"]
          == "Create new payments")
    r = narrow.call("GET", "/v2/permissions/payments.read")
    single = fixture("permission_single.json")
    check("permission payments.read: granted, fixture shape", r.status == 200
          and r.json()["granted"] is True and set(r.json()) == set(single)
          and set(r.json()["_links"]) == set(single["_links"]), r.body)
    r = narrow.call("GET", "/v2/permissions/payments.write")
    check("permission payments.write: not granted", r.status == 200
          and r.json()["granted"] is False)
    check("unknown permission: 404",
          is_hal_error(narrow.call("GET", "/v2/permissions/bogus.read"), 404))

    r = a.call("GET", "/v2/onboarding/me")
    want = fixture("onboarding_me.json")
    body = r.json()
    check("onboarding/me: fixture shape with the organization's name", r.status == 200
          and set(body) == set(want) and set(body["_links"]) == set(want["_links"])
          and body["resource"] == "onboarding" and body["name"] == "Prof B.V."
          and body["status"] == "completed" and body["canReceivePayments"] is True
          and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", body["signedUpAt"])
          and body["_links"]["organization"]["href"].endswith("/v2/organizations/org_prof"),
          body)


def test_create_and_get(sim):
    a = Client(sim, "org_pay")
    b = Client(sim, "org_pay_other")
    base = f"https://localhost:{sim.port}/v2/"
    r = a.pay(metadata={"order_id": 12345}, webhookUrl="https://shop.example/hook")
    check("create payment: 201 hal+json", r.status == 201
          and r.header("Content-Type").startswith("application/hal+json"), (r.status, r.body))
    p = r.json()
    check("payment: Mollie's fields", PAYMENT_ID.match(p["id"]) and p["resource"] == "payment"
          and p["mode"] == "live" and p["status"] == "open"
          and p["amount"] == {"value": "10.00", "currency": "EUR"}
          and p["description"] == "Order 12345" and p["profileId"] == "pfl_pay"
          and p["redirectUrl"] == "https://shop.example/return"
          and p["webhookUrl"] == "https://shop.example/hook"
          and p["metadata"] == {"order_id": 12345} and p["method"] is None
          and p["sequenceType"] == "oneoff"
          and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", p["createdAt"])
          and "expiresAt" in p, p)
    check("payment: a subset of payment_single.json's fields",
          set(p) <= set(fixture("payment_single.json")), set(p) - set(fixture(
              "payment_single.json")))
    check("payment links: self (from Host), checkout, dashboard, documentation",
          set(p["_links"]) == {"self", "checkout", "dashboard", "documentation"}
          and p["_links"]["self"] == {"href": base + "payments/" + p["id"],
                                      "type": "application/hal+json"}
          and p["_links"]["checkout"]["type"] == "text/html", p["_links"])
    r = a.call("GET", "/v2/payments/" + p["id"])
    got = r.json()
    check("get payment: 200, same object", r.status == 200 and {
        k: v for k, v in got.items() if k != "_links"} == {
        k: v for k, v in p.items() if k != "_links"}
        and got["_links"]["self"] == p["_links"]["self"], r.body)
    r = a.call("GET", "/v2/payments/" + p["id"], headers={"Host": "api.example.test"})
    check("links follow the Host header", r.json()["_links"]["self"]["href"]
          == "https://api.example.test/v2/payments/" + p["id"], r.body)

    r = a.pay(testmode=True, value="0.01")
    t = r.json()
    check("create with testmode true: a test payment", r.status == 201 and t["mode"] == "test"
          and t["_links"]["self"]["href"] == base + f"payments/{t['id']}?testmode=true", r.body)
    r = a.call("GET", "/v2/payments/" + t["id"])
    check("test payment without testmode: 404 wrong mode", is_hal_error(r, 404)
          and r.json()["detail"].startswith(f"Payment {t['id']} exists, but the wrong mode is "
                                            "used"), r.body)
    check("test payment with testmode=true: 200",
          a.call("GET", f"/v2/payments/{t['id']}?testmode=true").json().get("id") == t["id"])
    r = a.call("GET", f"/v2/payments/{p['id']}?testmode=true")
    check("live payment with testmode=true: 404 wrong mode", is_hal_error(r, 404)
          and "wrong mode" in r.json()["detail"], r.body)
    check("testmode=false selects live",
          a.call("GET", f"/v2/payments/{p['id']}?testmode=false").status == 200)
    check("testmode=maybe: 400 field testmode",
          is_hal_error(a.call("GET", f"/v2/payments/{p['id']}?testmode=maybe"), 400, "testmode"))
    r = a.call("GET", "/v2/payments/tr_I_dont_exist")
    check("unknown payment: 404 Mollie's detail", is_hal_error(r, 404)
          and r.json()["detail"] == "No payment exists with token tr_I_dont_exist.", r.body)
    r = b.call("GET", "/v2/payments/" + p["id"])
    check("another organization's payment: 404 like an unknown one", is_hal_error(r, 404)
          and r.json()["detail"].startswith("No payment exists"), r.body)

    form = {"amount[currency]": "EUR", "amount[value]": "5.50", "description": "form one",
            "profileId": a.profile, "testmode": "true", "metadata[order]": "7"}
    r = a.call("POST", "/v2/payments", form, form=True)
    check("form-encoded create: 201 test payment", r.status == 201 and r.json()["mode"] == "test"
          and r.json()["amount"] == {"value": "5.50", "currency": "EUR"}
          and r.json()["metadata"] == {"order": "7"} and "redirectUrl" not in r.json(), r.body)

    count0 = len(sim_payments(sim, "org_pay"))
    for name, kw, status, field in (
            ("bad JSON", {"raw": "{not json", "content_type": "application/json"}, 400, None),
            ("JSON array", {"raw": "[1]", "content_type": "application/json"}, 400, None),
            ("text/plain", {"raw": "x", "content_type": "text/plain"}, 415, None),
            ("missing amount", {"body": payment_body(a.profile, amount=None)}, 422, "amount"),
            ("amount not an object", {"body": payment_body(a.profile, amount="10.00")}, 422,
             "amount"),
            ("value a number", {"body": payment_body(a.profile, value=10)}, 422, "amount.value"),
            ("value one decimal", {"body": payment_body(a.profile, value="10.0")}, 422,
             "amount.value"),
            ("value with comma", {"body": payment_body(a.profile, value="10,00")}, 422,
             "amount.value"),
            ("lower-case currency", {"body": payment_body(a.profile, currency="eur")}, 422,
             "amount.currency"),
            ("zero amount", {"body": payment_body(a.profile, value="0.00")}, 422, "amount"),
            ("missing description", {"body": payment_body(a.profile, description=None)}, 422,
             "description"),
            ("long description", {"body": payment_body(a.profile, description="x" * 256)}, 422,
             "description"),
            ("bad redirectUrl", {"body": payment_body(a.profile, redirectUrl="not a url")}, 422,
             "redirectUrl"),
            ("bad webhookUrl", {"body": payment_body(a.profile, webhookUrl=5)}, 422,
             "webhookUrl"),
            ("testmode a string", {"body": payment_body(a.profile, testmode="yes")}, 422,
             "testmode"),
            ("missing profileId", {"body": payment_body(None)}, 422, "profileId"),
            ("another organization's profileId", {"body": payment_body(b.profile)}, 422,
             "profileId"),
            ("unknown profileId", {"body": payment_body("pfl_nope")}, 422, "profileId")):
        r = a.call("POST", "/v2/payments", **kw)
        check(f"create, {name}: {status} field {field}", is_hal_error(r, status, field),
              (r.status, r.body))
    check("rejected creates made no payment", len(sim_payments(sim, "org_pay")) == count0)
    r = a.call("POST", "/v2/payments", payment_body(a.profile, redirectUrl=None, extra="x"))
    check("redirectUrl optional, unknown fields ignored", r.status == 201, r.body)

    listed = sim_payments(sim, "org_pay")
    check("/_sim/payments: exact fields, creation order",
          [x["id"] for x in listed][:2] == [p["id"], t["id"]]
          and listed[0] == {"id": p["id"], "organization_id": "org_pay", "mode": "live",
                            "profile_id": "pfl_pay", "status": "open",
                            "amount": {"currency": "EUR", "value": "10.00"},
                            "description": "Order 12345", "idempotency_key": "",
                            "created_at_ms": listed[0]["created_at_ms"]}
          and listed[1]["mode"] == "test", listed[:2])
    everyone = sim_payments(sim)
    check("/_sim/payments without a filter: all organizations",
          len(everyone) >= len(listed) and {x["organization_id"] for x in everyone} >= {"org_pay"})


def test_pagination(sim):
    a = Client(sim, "org_page")
    b = Client(sim, "org_page_other")
    live = sim.control("POST", "payments/seed", {"organization_id": "org_page", "count": 7})["ids"]
    test = sim.control("POST", "payments/seed", {"organization_id": "org_page", "count": 3,
                                                 "mode": "test"})["ids"]
    other = sim.control("POST", "payments/seed", {"organization_id": "org_page_other",
                                                  "count": 2})["ids"]
    newest = list(reversed(live))
    base = f"https://localhost:{sim.port}/v2/payments"

    r = a.call("GET", "/v2/payments")
    body = r.json()
    want = fixture("payments_list.json")
    check("list: shape of payments_list.json", r.status == 200 and set(body) == set(want)
          and set(body["_links"]) == set(want["_links"]) and body["count"] == 7
          and [x["id"] for x in body["_embedded"]["payments"]] == newest
          and body["_links"]["self"]["href"] == base + "?limit=50"
          and body["_links"]["previous"] is None and body["_links"]["next"] is None,
          body.get("_links"))
    check("list: embedded payments are full payment objects",
          all(x["resource"] == "payment" and x["mode"] == "live"
              and x["profileId"] == "pfl_page" for x in body["_embedded"]["payments"]))

    pages = []
    path = "/v2/payments?limit=3"
    while path and len(pages) < 10:
        page = a.call("GET", path).json()
        pages.append(page)
        nxt = page["_links"]["next"]
        path = relative(nxt["href"]) if nxt else None
    ids = [[x["id"] for x in p["_embedded"]["payments"]] for p in pages]
    check("paging limit 3: three pages, newest first, nothing lost",
          ids == [newest[0:3], newest[3:6], newest[6:7]], ids)
    links = [(p["_links"]["self"]["href"], (p["_links"]["previous"] or {}).get("href"),
              (p["_links"]["next"] or {}).get("href")) for p in pages]
    check("paging links: from inclusive, previous/next null at the ends", links == [
        (base + "?limit=3", None, base + f"?from={newest[3]}&limit=3"),
        (base + f"?from={newest[3]}&limit=3", base + f"?from={newest[0]}&limit=3",
         base + f"?from={newest[6]}&limit=3"),
        (base + f"?from={newest[6]}&limit=3", base + f"?from={newest[3]}&limit=3", None)], links)
    check("paging: counts per page", [p["count"] for p in pages] == [3, 3, 1])
    r = a.call("GET", f"/v2/payments?from={newest[1]}&limit=3")
    page = r.json()
    check("paging from the middle: previous clamps to the newest",
          [x["id"] for x in page["_embedded"]["payments"]] == newest[1:4]
          and page["_links"]["previous"]["href"] == base + f"?from={newest[0]}&limit=3"
          and page["_links"]["next"]["href"] == base + f"?from={newest[4]}&limit=3", page)

    r = a.call("GET", "/v2/payments?testmode=true&limit=2&foo=bar")
    page = r.json()
    check("test mode list: only test payments, links keep testmode and the rest",
          [x["id"] for x in page["_embedded"]["payments"]] == [test[2], test[1]]
          and page["_links"]["self"]["href"] == base + "?limit=2&testmode=true&foo=bar"
          and page["_links"]["next"]["href"]
          == base + f"?from={test[0]}&limit=2&testmode=true&foo=bar"
          and page["_links"]["previous"] is None, page.get("_links"))
    page = a.call("GET", relative(page["_links"]["next"]["href"])).json()
    check("test mode page 2 via next", [x["id"] for x in page["_embedded"]["payments"]]
          == [test[0]] and page["_links"]["next"] is None
          and page["_links"]["previous"]["href"]
          == base + f"?from={test[2]}&limit=2&testmode=true&foo=bar", page.get("_links"))
    check("other organizations' payments are not listed",
          [x["id"] for x in b.call("GET", "/v2/payments").json()["_embedded"]["payments"]]
          == list(reversed(other)))
    check("profileId filter: own profile lists all, another none",
          a.call("GET", "/v2/payments?profileId=pfl_page").json()["count"] == 7
          and a.call("GET", "/v2/payments?profileId=pfl_x").json()["count"] == 0)
    r = a.call("GET", "/v2/payments?limit=250", headers={"Host": "api.example.test:8443"})
    check("limit 250 accepted; links from the Host header", r.status == 200
          and r.json()["_links"]["self"]["href"]
          == "https://api.example.test:8443/v2/payments?limit=250", r.body)

    for bad in ("0", "251", "-1", "abc", "1.5", ""):
        r = a.call("GET", "/v2/payments?limit=" + bad)
        check(f"limit={bad!r}: 400 field limit", is_hal_error(r, 400, "limit"), r.body)
    for name, cursor in (("unknown", "tr_nope000000"), ("another mode", test[0]),
                         ("another organization", other[0])):
        r = a.call("GET", "/v2/payments?from=" + cursor)
        check(f"from of {name}: 400 Invalid cursor value", is_hal_error(r, 400, "from"), r.body)
    empty = Client(sim, "org_page_empty").call("GET", "/v2/payments").json()
    check("no payments: count 0, empty list, no previous/next", empty["count"] == 0
          and empty["_embedded"]["payments"] == [] and empty["_links"]["next"] is None
          and empty["_links"]["previous"] is None, empty)


def test_refunds(sim):
    a = Client(sim, "org_ref")
    p = a.pay(value="20.00").json()
    r = a.call("POST", f"/v2/payments/{p['id']}/refunds",
               {"amount": {"currency": "EUR", "value": "5.00"}})
    check("refund of an open payment: 422", is_hal_error(r, 422)
          and "not paid" in r.json()["detail"], r.body)
    s = sim.control("POST", "payments/status", {"id": p["id"], "status": "paid"})
    check("payments/status answers the payment", s["status"] == "paid" and s["id"] == p["id"], s)
    got = a.call("GET", "/v2/payments/" + p["id"]).json()
    check("paid payment: paidAt, amountRefunded/Remaining, no checkout link",
          got["status"] == "paid" and "paidAt" in got and "expiresAt" not in got
          and got["amountRemaining"] == {"value": "20.00", "currency": "EUR"}
          and "checkout" not in got["_links"], got)
    r = a.call("POST", f"/v2/payments/{p['id']}/refunds",
               {"amount": {"currency": "EUR", "value": "5.00"}, "description": "broken",
                "metadata": {"rma": 1}})
    ref = r.json()
    check("refund: 201 refund object", r.status == 201 and REFUND_ID.match(ref["id"])
          and ref["resource"] == "refund" and ref["paymentId"] == p["id"]
          and ref["amount"] == {"value": "5.00", "currency": "EUR"} and ref["status"] == "pending"
          and ref["description"] == "broken" and ref["metadata"] == {"rma": 1}
          and "createdAt" in ref and set(ref["_links"]) == {"self", "payment", "documentation"}
          and ref["_links"]["payment"]["href"].endswith("/v2/payments/" + p["id"]), r.body)
    got = a.call("GET", "/v2/payments/" + p["id"]).json()
    check("payment after refund: amounts and a refunds link",
          got["amountRefunded"] == {"value": "5.00", "currency": "EUR"}
          and got["amountRemaining"] == {"value": "15.00", "currency": "EUR"}
          and "refunds" in got["_links"], got)
    for name, body, field in (
            ("over the remaining amount", {"amount": {"currency": "EUR", "value": "15.01"}},
             "amount"),
            ("another currency", {"amount": {"currency": "USD", "value": "1.00"}},
             "amount.currency"),
            ("missing amount", {}, "amount"),
            ("testmode a string", {"amount": {"currency": "EUR", "value": "1.00"},
                                   "testmode": "no"}, "testmode")):
        r = a.call("POST", f"/v2/payments/{p['id']}/refunds", body)
        check(f"refund {name}: 422 field {field}", is_hal_error(r, 422, field), r.body)
    r = a.call("POST", f"/v2/payments/{p['id']}/refunds",
               {"amount": {"currency": "EUR", "value": "1.00"}, "testmode": True})
    check("refund in the wrong mode: 404", is_hal_error(r, 404)
          and "wrong mode" in r.json()["detail"], r.body)
    r = a.call("POST", "/v2/payments/tr_nope000000/refunds",
               {"amount": {"currency": "EUR", "value": "1.00"}})
    check("refund of an unknown payment: 404", is_hal_error(r, 404), r.body)
    t = a.pay(testmode=True).json()
    sim.control("POST", "payments/status", {"id": t["id"], "status": "paid"})
    r = a.call("POST", f"/v2/payments/{t['id']}/refunds",
               {"amount": {"currency": "EUR", "value": "10.00"}, "testmode": True})
    check("full refund of a test payment", r.status == 201
          and r.json()["_links"]["self"]["href"].endswith("?testmode=true"), r.body)
    refunds = sim.control("GET", "refunds?organization_id=org_ref")["refunds"]
    check("/_sim/refunds lists them", [x["payment_id"] for x in refunds] == [p["id"], t["id"]]
          and refunds[0] == {"id": ref["id"], "payment_id": p["id"],
                             "organization_id": "org_ref", "mode": "live", "status": "pending",
                             "amount": {"currency": "EUR", "value": "5.00"},
                             "description": "broken", "idempotency_key": "",
                             "created_at_ms": refunds[0]["created_at_ms"]}, refunds)


def test_idempotency(sim):
    a = Client(sim, "org_idem")
    b = Client(sim, "org_idem_other")
    bad_request = fixture("bad_request.json")
    conflict = fixture("conflict_error.json")
    sim.control("POST", "api_log/clear")

    r1 = a.pay(key="key-1")
    r2 = a.pay(key="key-1")
    check("replay: same status and body, Idempotent-Replayed: true", r1.status == r2.status == 201
          and r1.body == r2.body and r2.header("Idempotent-Replayed") == "true"
          and r1.header("Idempotent-Replayed") is None
          and r2.header("Content-Type") == r1.header("Content-Type"), (r2.status, r2.headers))
    made = [x for x in sim_payments(sim, "org_idem") if x["idempotency_key"] == "key-1"]
    check("replay created nothing", len(made) == 1 and made[0]["id"] == r1.json()["id"], made)
    r = a.pay(key="key-1", value="11.00")
    check("same key, different body: 400 exact fixture body", r.status == 400
          and r.json() == bad_request and r.header("Content-Type").startswith(
              "application/hal+json"), r.body)
    r = a.call("POST", f"/v2/payments/{r1.json()['id']}/refunds",
               payment_body(a.profile), key="key-1")
    check("same key, another path: 400", r.status == 400 and r.json() == bad_request, r.body)
    r = a.call("POST", "/v2/payments?testmode=true", payment_body(a.profile), key="key-1")
    check("same key, another query: 400", r.status == 400 and r.json() == bad_request)
    r = b.pay(key="key-1")
    check("keys are per organization", r.status == 201
          and r.header("Idempotent-Replayed") is None and r.json()["id"] != r1.json()["id"])
    r = a.call("GET", "/v2/payments/" + r1.json()["id"], key="key-1")
    check("GET ignores Idempotency-Key", r.status == 200
          and r.header("Idempotent-Replayed") is None)

    r1 = a.pay(key="key-422", description=None)
    r2 = a.pay(key="key-422", description=None)
    check("a 422 is remembered and replayed", r1.status == r2.status == 422
          and r2.header("Idempotent-Replayed") == "true" and r1.body == r2.body)
    r = sim.call("POST", "/v2/payments", json.dumps(payment_body(a.profile)),
                 {"Idempotency-Key": "key-401", "Content-Type": "application/json"})
    check("a 401 stores nothing", r.status == 401 and a.pay(key="key-401").status == 201)

    # A fault that replaces processing stores nothing: the retry is processed.
    fault(sim, target="api", mode="http_503", method="POST")
    check("503 fault with a key", a.pay(key="key-503").status == 503)
    r = a.pay(key="key-503")
    check("retry after a 503: processed, not a replay", r.status == 201
          and r.header("Idempotent-Replayed") is None, (r.status, r.headers))
    check("exactly one payment for key-503", len([x for x in sim_payments(sim, "org_idem")
                                                  if x["idempotency_key"] == "key-503"]) == 1)

    # reply_then_drop: processed, reply lost; the retry with the key replays the payment.
    fault(sim, target="api", mode="reply_then_drop", method="POST")
    check("reply_then_drop: no response", transport_failure(lambda: a.pay(key="key-drop")))
    made = [x for x in sim_payments(sim, "org_idem") if x["idempotency_key"] == "key-drop"]
    check("reply_then_drop: the payment exists", len(made) == 1, made)
    r = a.pay(key="key-drop")
    check("retry after reply_then_drop: the same payment, replayed", r.status == 201
          and r.header("Idempotent-Replayed") == "true" and r.json()["id"] == made[0]["id"])

    # In flight: the first reply is held by a delay fault; the same key meanwhile is a 409.
    fault(sim, target="api", mode="delay", delay_ms=3000, method="POST",
          path_prefix="/v2/payments")
    first = {}

    def worker():
        try:
            first["r"] = a.pay(key="key-slow")
        except Exception as e:  # checked below
            first["r"] = e

    thread = threading.Thread(target=worker)
    thread.start()
    wait_for(lambda: any(x["idempotency_key"] == "key-slow"
                         for x in sim_payments(sim, "org_idem")), 5, "the delayed payment")
    r = a.pay(key="key-slow")
    check("same key while the first is in flight: 409 exact fixture body", r.status == 409
          and r.json() == conflict, (r.status, r.body))
    r = a.pay(key="key-slow", value="99.00")
    check("in flight wins over a different body: 409", r.status == 409, r.status)
    check("other keys are served meanwhile", a.pay(key="key-fast").status == 201)
    thread.join(10)
    check("the delayed first request: 201", isinstance(first.get("r"), st.Response)
          and first["r"].status == 201, first)
    r = a.pay(key="key-slow")
    check("after the first finished: a replay", r.status == 201
          and r.header("Idempotent-Replayed") == "true"
          and r.json()["id"] == first["r"].json()["id"])
    check("exactly one payment for key-slow", len([x for x in sim_payments(sim, "org_idem")
                                                   if x["idempotency_key"] == "key-slow"]) == 1)

    entries = [e for e in sim.control("GET", "api_log")["entries"]
               if e["idempotency_key"] == "key-1"]
    check("api_log: keys and replays", [(e["method"], e["status"], e["replayed"])
                                        for e in entries][:3]
          == [("POST", 201, False), ("POST", 201, True), ("POST", 400, False)], entries)


def test_idempotency_expiry(sim):
    """Last group: moves the clock on by an hour."""
    a = Client(sim, "org_idem_exp")
    r1 = a.pay(key="key-exp")
    sim.control("POST", "clock", {"advance_seconds": 3599})
    a.renew()
    r2 = a.pay(key="key-exp")
    check("after 59:59 still a replay", r2.header("Idempotent-Replayed") == "true"
          and r2.json()["id"] == r1.json()["id"])
    sim.control("POST", "clock", {"advance_seconds": 2})
    a.renew()
    r3 = a.pay(key="key-exp")
    check("after an hour the key is new: processed again", r3.status == 201
          and r3.header("Idempotent-Replayed") is None and r3.json()["id"] != r1.json()["id"])
    r4 = a.pay(key="key-exp", value="12.00")
    check("the renewed key is remembered with its own body", r4.status == 400)


def test_faults(sim):
    a = Client(sim, "org_rfault")
    p = a.pay().json()
    get = lambda: a.call("GET", "/v2/payments/" + p["id"])  # noqa: E731

    for mode, status, extra in (("http_500", 500, None), ("http_502", 502, None),
                                ("http_503", 503, None), ("http_504", 504, None),
                                ("http_429", 429, "Retry-After"),
                                ("http_400_invalid_grant", 400, None)):
        fault(sim, target="api", mode=mode, retry_after_seconds=3)
        r = get()
        check(f"api fault {mode}: {status} HAL", is_hal_error(r, status)
              and r.header("Retry-After") == "3", (r.status, r.headers, r.body))
        check(f"api fault {mode}: then normal", get().status == 200)
    fault(sim, target="api", mode="invalid_client")
    check("api fault invalid_client: the 401 body",
          get().json() == fixture("error_unauthorized.json"))
    fault(sim, target="api", mode="garbage")
    r = get()
    check("api fault garbage: 200 not JSON", r.status == 200 and not st.is_json(r.body))
    fault(sim, target="api", mode="missing_fields")
    r = get()
    check("api fault missing_fields: 200 JSON without id", r.status == 200 and "id" not in r.json())
    fault(sim, target="api", mode="reset")
    check("api fault reset", transport_failure(get))
    fault(sim, target="api", mode="delay", delay_ms=300)
    started = time.monotonic()
    check("api fault delay: 200 late", get().status == 200 and time.monotonic() - started >= 0.3)

    before = len(sim_payments(sim, "org_rfault"))
    fault(sim, target="api", mode="http_503", count=2)
    check("5xx faults on POST create nothing", a.pay().status == 503 and a.pay().status == 503
          and len(sim_payments(sim, "org_rfault")) == before)

    # truncated: the headers promise more than is sent, then the connection closes.
    fault(sim, target="api", mode="truncated")
    conn = sim.connection()
    conn.request("GET", "/v2/payments/" + p["id"], headers={"Authorization": f"Bearer {a.token}"})
    resp = conn.getresponse()
    length = int(resp.getheader("Content-Length"))
    try:
        resp.read()
        check("truncated: the read fails", False)
    except http.client.IncompleteRead as e:
        check("truncated: Content-Length is the whole body, half arrives",
              resp.status == 200 and 0 < len(e.partial) < length
              and len(e.partial) == length // 2, (len(e.partial), length))
    conn.close()
    fault(sim, target="api", mode="truncated", method="POST")
    check("truncated POST: the response breaks", transport_failure(lambda: a.pay(key="k-trunc")))
    check("truncated POST: the payment exists (processed)",
          any(x["idempotency_key"] == "k-trunc" for x in sim_payments(sim, "org_rfault")))
    r = a.pay(key="k-trunc")
    check("truncated POST: the retry with its key replays", r.status == 201
          and r.header("Idempotent-Replayed") == "true")

    # oversized: a large, valid JSON body.
    listed = fault(sim, target="api", mode="oversized")["faults"]
    check("oversized default size_bytes 3 MiB", listed[0]["size_bytes"] == 3 * 1024 * 1024,
          listed)
    r = get()
    check("oversized: 200, 3 MiB of valid JSON", r.status == 200
          and len(r.body) == 3 * 1024 * 1024 and st.is_json(r.body), len(r.body))
    fault(sim, target="all", mode="oversized", size_bytes=1000, count=2)
    r = get()
    check("oversized size_bytes 1000", r.status == 200 and len(r.body) == 1000
          and st.is_json(r.body), len(r.body))
    r = sim.refresh(a.refresh_token)
    check("oversized on the token endpoint too (target all)", r.status == 200
          and len(r.body) == 1000 and "access_token" not in r.json())
    for bad in ({"target": "api", "mode": "oversized", "size_bytes": 10},
                {"target": "api", "mode": "oversized", "size_bytes": 64 * 1024 * 1024 + 1},
                {"target": "token", "mode": "http_500", "method": "POST"},
                {"target": "all", "mode": "http_500", "path_prefix": "/v2/payments"},
                {"target": "api", "mode": "http_500", "path_prefix": "/oauth2/tokens"},
                {"target": "api", "mode": "http_500", "method": "post"},
                {"target": "api", "mode": "http_500", "method": 5}):
        check(f"bad fault {bad}: 400", control_status(sim, "POST", "faults", bad) == 400)

    # Filters.
    fault(sim, target="api", mode="http_500", count=-1, method="POST", path_prefix="/v2/payments")
    check("filter method POST + /v2/payments: GET unaffected", get().status == 200
          and a.call("GET", "/v2/profiles").status == 200)
    check("filter: POST /v2/payments faulted", a.pay().status == 500)
    check("filter: prefix matches sub-paths", a.call(
        "POST", f"/v2/payments/{p['id']}/refunds", {}).status == 500)
    fault(sim, target="api", mode="http_502", count=-1, path_prefix="/v2/profiles")
    listed = sim.control("GET", "faults")["faults"]
    check("restricted api faults coexist, listed with method and path_prefix",
          sorted((f["method"], f["path_prefix"], f["mode"]) for f in listed)
          == [("", "/v2/profiles", "http_502"), ("POST", "/v2/payments", "http_500")]
          and all(set(f) == {"target", "mode", "count", "retry_after_seconds", "delay_ms",
                             "grant_type", "method", "path_prefix", "size_bytes"}
                  for f in listed), listed)
    check("filter path_prefix /v2/profiles", a.call("GET", "/v2/profiles").status == 502
          and a.call("GET", "/v2/profiles/me").status == 502 and get().status == 200)
    fault(sim, target="api", mode="http_503", count=1, method="GET")
    check("filter method GET alone", get().status == 503 and get().status == 200)
    listed = sim.control("GET", "faults")["faults"]
    check("a restricted fault replaces only the unrestricted one and its own kind",
          len(listed) == 2, listed)
    fault(sim, target="api", mode="http_429")
    listed = sim.control("GET", "faults")["faults"]
    check("an unrestricted api fault replaces the restricted ones",
          len(listed) == 1 and listed[0]["method"] == "" and listed[0]["path_prefix"] == "",
          listed)
    fault(sim, target="api", mode="none")

    log = [e for e in sim.control("GET", "api_log")["entries"]
           if e["organization_id"] == "org_rfault"]
    faults = {e["fault"] for e in log}
    check("api_log records every fault mode", faults >= {
        "http_500", "http_502", "http_503", "http_504", "http_429", "reset", "delay",
        "truncated", "oversized", "garbage", "invalid_client", "none"}, faults)
    check("api_log status 0 for reset, the decided one for truncated",
          all(e["status"] == 0 for e in log if e["fault"] == "reset")
          and all(e["status"] in (200, 201) for e in log if e["fault"] == "truncated"), log[-3:])


def test_control_and_stats(sim):
    a = Client(sim, "org_ctl")
    for bad in ({"organization_id": "org_ctl", "count": 0},
                {"organization_id": "org_ctl", "count": 10001},
                {"organization_id": "org_ctl"},
                {"count": 1},
                {"organization_id": "ctl", "count": 1},
                {"organization_id": "org_ctl", "count": 1, "mode": "sandbox"},
                {"organization_id": "org_ctl", "count": 1, "status": "expired"},
                {"organization_id": "org_ctl", "count": 1, "amount": {"value": "1"}}):
        check(f"seed {bad}: 400", control_status(sim, "POST", "payments/seed", bad) == 400)
    check("payments/status: unknown id 404", control_status(
        sim, "POST", "payments/status", {"id": "tr_nope", "status": "paid"}) == 404)
    check("payments/status: bad status 400", control_status(
        sim, "POST", "payments/status", {"id": "tr_nope", "status": "done"}) == 400)
    check("GET payments/seed: 405", control_status(sim, "GET", "payments/seed") == 405)
    check("POST /_sim/payments: 405", control_status(sim, "POST", "payments", {}) == 405)
    check("GET api_log/clear: 405", control_status(sim, "GET", "api_log/clear") == 405)

    started = time.monotonic()
    ids = sim.control("POST", "payments/seed", {
        "organization_id": "org_ctl", "count": 10000, "status": "paid",
        "amount": {"currency": "USD", "value": "3.50"}, "description": "bulk"})["ids"]
    check("seed 10000 quickly, unique ids in order", len(ids) == 10000 == len(set(ids))
          and all(PAYMENT_ID.match(i) for i in ids) and time.monotonic() - started < 10)
    listed = sim_payments(sim, "org_ctl")
    check("seeded payments listed in creation order", [x["id"] for x in listed] == ids
          and listed[0]["status"] == "paid" and listed[0]["amount"]
          == {"currency": "USD", "value": "3.50"} and listed[0]["description"] == "bulk")
    page = a.call("GET", "/v2/payments?limit=250").json()
    check("the newest 250 first", page["count"] == 250
          and page["_embedded"]["payments"][0]["id"] == ids[-1])
    created = sim.control("POST", "payments/seed", {"organization_id": "org_ctl_new",
                                                    "count": 1})["ids"]
    check("seeding creates an unknown organization", any(
        o["id"] == "org_ctl_new" for o in sim.control("GET", "organizations")["organizations"])
        and sim_payments(sim, "org_ctl_new")[0]["id"] == created[0])

    # Keep-alive: many cheap lookups on one connection (the benchmark's path).
    conn = sim.connection()
    started = time.monotonic()
    statuses = {a.call("GET", "/v2/payments/" + ids[i * 37], conn=conn).status
                for i in range(200)}
    elapsed = time.monotonic() - started
    conn.close()
    check("200 keep-alive lookups among 10000 payments", statuses == {200} and elapsed < 10,
          (statuses, elapsed))

    # API log.
    cleared = sim.control("POST", "api_log/clear")
    check("api_log/clear answers the count", cleared["cleared"] > 0, cleared)
    t0 = sim.control("GET", "clock")["now_ms"]
    a.call("GET", "/v2/payments?limit=2&testmode=true")
    sim.call("GET", "/v2/profiles", headers={"Authorization": "Bearer access_bogus"})
    a.pay(key="log-key")
    entries = sim.control("GET", "api_log")["entries"]
    t1 = sim.control("GET", "clock")["now_ms"]
    check("api_log: one entry per /v2/ request, exact fields", [
        (e["method"], e["path"], e["query"], e["organization_id"], e["status"], e["fault"],
         e["idempotency_key"], e["replayed"]) for e in entries] == [
        ("GET", "/v2/payments", "limit=2&testmode=true", "org_ctl", 200, "none", "", False),
        ("GET", "/v2/profiles", "", "", 401, "none", "", False),
        ("POST", "/v2/payments", "", "org_ctl", 201, "none", "log-key", False)]
        and all(list(e) == ["time_ms", "method", "path", "query", "organization_id", "status",
                            "fault", "idempotency_key", "replayed"] for e in entries)
        and all(t0 <= e["time_ms"] <= t1 for e in entries), entries)
    check("api_log never holds a token", a.token not in json.dumps(entries)
          and "access_" not in json.dumps(entries))

    # Stats: requests, in flight, and the peak with three delayed requests.
    s0 = sim.control("POST", "stats/reset")
    check("stats: api fields after reset", s0["api_requests"] == 0
          and s0["api_requests_in_flight"] == 0 and s0["max_concurrent_api_requests"] == 0, s0)
    a.call("GET", "/v2/permissions")
    a.call("GET", "/v2/nowhere")
    fault(sim, target="api", mode="http_503")
    a.call("GET", "/v2/permissions")
    fault(sim, target="api", mode="delay", delay_ms=1500, count=3)
    results = []

    def worker():
        try:
            results.append(a.call("GET", "/v2/onboarding/me").status)
        except Exception as e:  # checked below
            results.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    seen = wait_for(lambda: sim.control("GET", "stats")["api_requests_in_flight"] == 3, 5,
                    "three API requests in flight")
    for t in threads:
        t.join(10)
    s = sim.control("GET", "stats")
    check("stats: three delayed API requests in flight at once", seen and results == [200] * 3
          and s["max_concurrent_api_requests"] == 3 and s["api_requests_in_flight"] == 0,
          (results, s))
    check("stats: api_requests counts all /v2/ requests (faulted too)",
          s["api_requests"] == 6, s)
    check("stats: token counters untouched by API requests", s["token_requests"] == 0, s)


def test_hang(sim):
    """Last group: leaves a request hanging (in flight for 30 s) for the shutdown check."""
    a = Client(sim, "org_hang")
    p = a.pay().json()
    get = lambda: a.call("GET", "/v2/payments/" + p["id"])  # noqa: E731
    fault(sim, target="api", mode="hang", method="GET", path_prefix="/v2/payments/")
    conn = sim.connection(timeout=1.0)
    hung = False
    try:
        a.call("GET", "/v2/payments/" + p["id"], conn=conn)
    except (socket.timeout, TimeoutError):
        hung = True
    check("api fault hang: no response", hung)
    check("while one hangs, others are served", get().status == 200)
    conn.close()

    check("a hanging request counts as in flight",
          sim.control("GET", "stats")["api_requests_in_flight"] == 1)
    entries = [e for e in sim.control("GET", "api_log")["entries"] if e["fault"] == "hang"]
    check("api_log: hang with status 0", len(entries) == 1 and entries[0]["status"] == 0
          and entries[0]["organization_id"] == "org_hang", entries)


def test_threads_flag(binary, ca_dir, workdir):
    cert = ["--cert", os.path.join(ca_dir, "server.pem"), "--key",
            os.path.join(ca_dir, "server.key")]
    for bad in ("0", "65", "two"):
        r = subprocess.run([binary, *cert, "--threads", bad], capture_output=True, timeout=10)
        check(f"--threads {bad}: exit 2", r.returncode == 2 and b"--threads" in r.stderr, r)
    r = subprocess.run([binary, "--help"], capture_output=True, timeout=10)
    check("--help mentions --threads", b"--threads" in r.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sim", required=True)
    parser.add_argument("--gen-ca", required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mollie-sim-rest-test.") as workdir:
        ca_dir = os.path.join(workdir, "ca")
        subprocess.run([args.gen_ca, ca_dir], check=True, timeout=60)
        test_threads_flag(args.sim, ca_dir, workdir)
        sim = st.Sim(args.sim, ca_dir, workdir, "rest",
                     ["--client-id", st.CLIENT_ID, "--client-secret", st.SECRET,
                      "--redirect-uri", st.REDIRECT, "--threads", "4"])
        tokens = []
        try:
            for name, fn in (("auth, routing, scopes", test_auth_routing_scopes),
                             ("profiles, permissions, onboarding",
                              test_profiles_permissions_onboarding),
                             ("create and get", test_create_and_get),
                             ("pagination", test_pagination),
                             ("refunds", test_refunds),
                             ("idempotency", test_idempotency),
                             ("faults", test_faults),
                             ("control and stats", test_control_and_stats),
                             ("idempotency expiry", test_idempotency_expiry),
                             ("hang", test_hang)):
                try:
                    fn(sim)
                except Exception as e:  # a crash in one group must not hide the others
                    check(f"{name} group ran", False, repr(e))
            tokens = [t["token"] for t in sim.control("GET", "truth")["access_tokens"]]
        finally:
            started = time.monotonic()
            rc = sim.stop()
            check("SIGTERM with a hanging request: exit 0 within 5 s", rc == 0 and time.monotonic() - started < 5, rc)
        with open(sim.log_path) as f:
            log = f.read()
        check("log has REST request lines", "POST /v2/payments 201" in log
              and "GET /v2/payments 200" in log and "(fault: truncated)" in log)
        check("log shows no access token", tokens and not any(t in log for t in tokens))

    print(f"{st.passed} passed, {st.failed} failed")
    return 0 if st.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
