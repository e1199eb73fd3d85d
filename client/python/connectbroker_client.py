#!/usr/bin/python3
"""Example Python client of the connect-broker gRPC API (package connectbroker.v1).

A small library over the generated stubs plus a CLI:

    import connectbroker_client as cb
    tok = cb.get_access_token("127.0.0.1:50051", organization_id="org_123", min_ttl_seconds=60)
    requests.get(url, headers={"Authorization": "Bearer " + tok["token"]})

    # Or let the broker call Mollie for you (it injects the token; you never hold one):
    r = cb.call("127.0.0.1:50051", "GET", "/v2/profiles", organization_id="org_123")
    r["status"], r["json"]["_embedded"]["profiles"][0]["id"]
    for page in cb.call_paged(addr, "/v2/payments", organization_id="org_123", testmode=True):
        for payment in page["items"]: ...

    ./connectbroker_client.py --address 127.0.0.1:50051 token org_123 [--show-token]
    ./connectbroker_client.py merchants [--status active]
    ./connectbroker_client.py create-payment org_123 --amount 10.00 --description "Order 1" \
        --redirect-url https://shop.example/return   # a test-mode payment; prints its id

The generated stubs are found in $CONNECT_BROKER_PY_STUBS (a directory holding the
`connectbroker/v1/*_pb2*.py` package), by default ../../build/python relative to this file.
Errors raise BrokerError, whose message never contains a token.
"""

import argparse
import datetime
import json
import os
import sys
import uuid

_HERE = os.path.dirname(os.path.abspath(__file__))
STUBS_DIR = os.path.abspath(
    os.environ.get("CONNECT_BROKER_PY_STUBS", os.path.join(_HERE, "..", "..", "build", "python")))
if STUBS_DIR not in sys.path:
    sys.path.insert(0, STUBS_DIR)

import grpc  # noqa: E402  (Debian: python3-grpcio)
from google.protobuf import json_format  # noqa: E402

try:
    from connectbroker.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402
    from connectbroker.v1 import merchant_pb2  # noqa: E402
    from connectbroker.v1 import onboarding_pb2, onboarding_pb2_grpc  # noqa: E402
    from connectbroker.v1 import proxy_pb2, proxy_pb2_grpc  # noqa: E402
    from connectbroker.v1 import token_pb2, token_pb2_grpc  # noqa: E402
except ImportError as e:  # pragma: no cover - depends on the build
    raise ImportError(
        "connect-broker stubs not found in %s (set CONNECT_BROKER_PY_STUBS to the build's "
        "python/ directory; the cb_python_stubs target generates them): %s" % (STUBS_DIR, e))

DEFAULT_ADDRESS = os.environ.get("CONNECT_BROKER_ADDRESS", "127.0.0.1:50051")
DEFAULT_TIMEOUT = 10.0

_STATUS_BY_NAME = {
    "active": merchant_pb2.GRANT_STATUS_ACTIVE,
    "refresh-failing": merchant_pb2.GRANT_STATUS_REFRESH_FAILING,
    "needs-reauthorization": merchant_pb2.GRANT_STATUS_NEEDS_REAUTHORIZATION,
    "revoked": merchant_pb2.GRANT_STATUS_REVOKED,
}


class BrokerError(Exception):
    """A failed call: `code` is a grpc.StatusCode, `details` the daemon's message.

    `unreachable` is True when no daemon answered (connection failed), as opposed to an error
    the daemon returned (which may itself be UNAVAILABLE, e.g. when Mollie cannot be reached).
    """

    def __init__(self, method, code, details, unreachable):
        self.method = method
        self.code = code
        self.details = details
        self.unreachable = unreachable
        super().__init__("%s: %s: %s" % (method, code.name, details))


def _raise_broker_error(address, method, e):
    code = e.code()
    # gRPC core marks statuses that came from the server with "received from peer".
    from_peer = "received from peer" in (e.debug_error_string() or "").lower()
    unreachable = not from_peer and code in (grpc.StatusCode.UNAVAILABLE,
                                             grpc.StatusCode.DEADLINE_EXCEEDED)
    details = e.details() or ""
    if unreachable:
        details = "cannot reach the connect-broker daemon at %s: %s" % (address, details)
    raise BrokerError(method, code, details, unreachable) from None


def _call(address, method, rpc, request, timeout):
    try:
        return rpc(request, timeout=timeout)
    except grpc.RpcError as e:
        _raise_broker_error(address, method, e)


def _datetime(ts):
    """A protobuf Timestamp as an aware UTC datetime, or None when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=datetime.timezone.utc)


def get_access_token(address, organization_id=None, account_ref=None, min_ttl_seconds=0,
                     timeout=DEFAULT_TIMEOUT):
    """TokenService.GetAccessToken for one merchant (by organization id or account ref).

    Returns dict(token, expires_at (datetime), scopes, organization_id).
    """
    if (organization_id is None) == (account_ref is None):
        raise ValueError("pass exactly one of organization_id and account_ref")
    request = token_pb2.GetAccessTokenRequest()
    if organization_id is not None:
        request.organization_id = organization_id
    else:
        request.account_ref = account_ref
    request.min_ttl.seconds = int(min_ttl_seconds)
    with grpc.insecure_channel(address) as channel:
        stub = token_pb2_grpc.TokenServiceStub(channel)
        response = _call(address, "GetAccessToken", stub.GetAccessToken, request, timeout)
    return {
        "token": response.access_token,
        "expires_at": _datetime(response.expires_at),
        "scopes": list(response.scopes),
        "organization_id": response.organization_id,
    }


def list_merchants(address, status=None, timeout=DEFAULT_TIMEOUT):
    """AdminService.ListMerchants, all pages. `status`: e.g. "active" (None: all).

    Returns a list of dicts with the proto field names (snake_case); never contains tokens.
    """
    request = admin_pb2.ListMerchantsRequest()
    if status is not None:
        request.status = _STATUS_BY_NAME[status]
    merchants = []
    with grpc.insecure_channel(address) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        while True:
            response = _call(address, "ListMerchants", stub.ListMerchants, request, timeout)
            merchants.extend(
                json_format.MessageToDict(m, including_default_value_fields=True,
                                          preserving_proto_field_name=True)
                for m in response.merchants)
            if not response.next_page_token or response.next_page_token == request.page_token:
                return merchants
            request.page_token = response.next_page_token


def begin_authorization(address, account_ref, scopes=(), force=False, locale="",
                        landing_page=None, timeout=DEFAULT_TIMEOUT):
    """OnboardingService.BeginAuthorization: the "Login with Mollie" consent URL.

    `landing_page`: None, "login" or "signup". Returns dict(authorize_url, state, expires_at).
    """
    request = onboarding_pb2.BeginAuthorizationRequest(
        account_ref=account_ref, scopes=list(scopes), locale=locale)
    if force:
        request.approval_prompt = onboarding_pb2.APPROVAL_PROMPT_FORCE
    if landing_page is not None:
        request.landing_page = {"login": onboarding_pb2.LANDING_PAGE_LOGIN,
                                "signup": onboarding_pb2.LANDING_PAGE_SIGNUP}[landing_page]
    with grpc.insecure_channel(address) as channel:
        stub = onboarding_pb2_grpc.OnboardingServiceStub(channel)
        response = _call(address, "BeginAuthorization", stub.BeginAuthorization, request, timeout)
    return {
        "authorize_url": response.authorize_url,
        "state": response.state,
        "expires_at": _datetime(response.expires_at),
    }


def _merchant(request, organization_id, account_ref):
    if (organization_id is None) == (account_ref is None):
        raise ValueError("pass exactly one of organization_id and account_ref")
    if organization_id is not None:
        request.organization_id = organization_id
    else:
        request.account_ref = account_ref


def _query_params(query):
    """A dict or a list of (name, value) pairs as QueryParam messages, in order."""
    items = query.items() if isinstance(query, dict) else (query or ())
    return [proxy_pb2.QueryParam(name=str(k), value=str(v)) for k, v in items]


def _headers(headers):
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    return [proxy_pb2.HttpHeader(name=str(k), value=str(v)) for k, v in items]


def _json_or_none(raw):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def call(address, method, path, organization_id=None, account_ref=None, query=None, body=None,
         headers=None, testmode=False, idempotency_key=None, timeout=DEFAULT_TIMEOUT):
    """ProxyService.Call: one Mollie API request, sent by the broker with the merchant's token.

    `method`: GET, POST, PATCH or DELETE; `path` under /v2/ without a query (pass `query` as a
    dict or a list of pairs). `body`: a dict/list (sent as JSON) or str/bytes already holding
    JSON. `testmode=True` makes the broker add testmode=true. `idempotency_key` is sent as
    Idempotency-Key, so that retrying a POST after a lost reply does not create a second object.

    Every HTTP status Mollie answers with is a result, not an exception: returns dict(status,
    headers (list of (name, value)), body (bytes, exactly as Mollie sent them), json (the parsed
    body, or None), attempts, token_refreshed). BrokerError means the broker itself failed.
    """
    request = proxy_pb2.ProxyRequest(method=method.upper(), path=path,
                                     query=_query_params(query), headers=_headers(headers),
                                     testmode=bool(testmode), idempotency_key=idempotency_key or "")
    _merchant(request, organization_id, account_ref)
    if body is not None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":"))
        request.body = body.encode() if isinstance(body, str) else bytes(body)
    with grpc.insecure_channel(address) as channel:
        stub = proxy_pb2_grpc.ProxyServiceStub(channel)
        response = _call(address, "Call", stub.Call, request, timeout)
    return {
        "status": response.status,
        "headers": [(h.name, h.value) for h in response.headers],
        "body": response.body,
        "json": _json_or_none(response.body),
        "attempts": response.attempts,
        "token_refreshed": response.token_refreshed,
    }


def call_paged(address, path, organization_id=None, account_ref=None, query=None, headers=None,
               testmode=False, max_items=0, timeout=DEFAULT_TIMEOUT):
    """ProxyService.CallPaged: a generator of the pages of a Mollie list (GET), following
    `_links.next`, as they arrive; `timeout` bounds the whole iteration, `max_items` (0: all)
    the number of items.

    Yields dict(page_number, status, headers, embedded_key, items (parsed JSON objects), body
    (bytes; the HAL error when status is not 2xx, else empty)). A non-2xx page is the last one
    and is yielded, not raised; BrokerError means the broker itself failed.
    """
    request = proxy_pb2.ProxyPagedRequest(path=path, query=_query_params(query),
                                          headers=_headers(headers), testmode=bool(testmode),
                                          max_items=int(max_items))
    _merchant(request, organization_id, account_ref)
    with grpc.insecure_channel(address) as channel:
        stub = proxy_pb2_grpc.ProxyServiceStub(channel)
        stream = _call(address, "CallPaged", stub.CallPaged, request, timeout)
        try:
            for page in stream:
                yield {
                    "page_number": page.page_number,
                    "status": page.status,
                    "headers": [(h.name, h.value) for h in page.headers],
                    "embedded_key": page.embedded_key,
                    "items": [json.loads(item) for item in page.items],
                    "body": page.body,
                }
        except grpc.RpcError as e:
            _raise_broker_error(address, "CallPaged", e)
        finally:
            stream.cancel()  # the caller stopped iterating early: end the stream at the broker


def first_profile_id(address, organization_id=None, account_ref=None, timeout=DEFAULT_TIMEOUT):
    """The id (pfl_...) of the merchant's first website profile, from GET /v2/profiles."""
    r = call(address, "GET", "/v2/profiles", organization_id=organization_id,
             account_ref=account_ref, timeout=timeout)
    if r["status"] != 200:
        raise MollieError("GET /v2/profiles", r)
    profiles = ((r["json"] or {}).get("_embedded") or {}).get("profiles") or []
    if not profiles:
        raise MollieError("GET /v2/profiles", r, "the merchant has no website profile")
    return profiles[0]["id"]


def create_test_payment(address, amount, description, redirect_url, currency="EUR",
                        organization_id=None, account_ref=None, idempotency_key=None,
                        timeout=DEFAULT_TIMEOUT):
    """A test-mode payment through the broker: POST /v2/payments with the merchant's first
    profile (an OAuth app must name the profile), testmode and an Idempotency-Key (a new random
    one unless given; pass your own to make retries of the same order safe).

    Returns the payment (dict). Raises MollieError when Mollie does not answer 201.
    """
    merchant = {"organization_id": organization_id, "account_ref": account_ref}
    profile_id = first_profile_id(address, timeout=timeout, **merchant)
    body = {
        "amount": {"currency": currency, "value": amount},
        "description": description,
        "redirectUrl": redirect_url,
        "profileId": profile_id,
    }
    r = call(address, "POST", "/v2/payments", body=body, testmode=True,
             idempotency_key=idempotency_key or "cb-example-" + uuid.uuid4().hex,
             timeout=timeout, **merchant)
    if r["status"] != 201:
        raise MollieError("POST /v2/payments", r)
    return r["json"]


class MollieError(Exception):
    """Mollie answered, but not with the expected status: `status`, `body` (bytes), `detail`
    (Mollie's explanation when the body is a HAL error)."""

    def __init__(self, what, response, detail=None):
        self.status = response["status"]
        self.body = response["body"]
        self.detail = detail or ((response["json"] or {}).get("detail")
                                 if isinstance(response["json"], dict) else None)
        super().__init__("%s: HTTP %d%s" % (what, self.status,
                                            ": " + self.detail if self.detail else ""))


def mask_token(token):
    """Safe to print: the prefix up to '_' ("access_") and nothing else."""
    if not token:
        return "[empty]"
    underscore = token.find("_")
    if 0 <= underscore < 16:
        return token[:underscore + 1] + "[redacted]"
    return "[redacted]"


def _json_default(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError("not JSON serialisable: %r" % type(value))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="connectbroker_client.py",
        description="Example client of the connect-broker daemon; prints JSON.",
        epilog="Exit status: 0 ok, 1 error from the daemon, 2 usage, 3 daemon unreachable, "
               "4 Mollie answered with an unexpected HTTP status (create-payment).")
    parser.add_argument("--address", default=DEFAULT_ADDRESS,
                        help="daemon address, host:port or unix:/path (default: "
                             "$CONNECT_BROKER_ADDRESS or 127.0.0.1:50051; now %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="deadline per call in seconds (default %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    token = sub.add_parser("token", help="get an access token (masked unless --show-token)")
    token.add_argument("org", metavar="ORG",
                       help="organization id (org_...), or an account ref with --account-ref")
    token.add_argument("--account-ref", action="store_true", help="ORG is an account ref")
    token.add_argument("--min-ttl", type=int, default=0, metavar="SECONDS",
                       help="the token must stay valid this long (default 0)")
    token.add_argument("--show-token", action="store_true", help="print the token unmasked")
    merchants = sub.add_parser("merchants", help="list merchants")
    merchants.add_argument("--status", choices=sorted(_STATUS_BY_NAME),
                           help="only merchants in this status")
    pay = sub.add_parser(
        "create-payment",
        help="create a test-mode payment through the broker's proxy and print its id",
        description="GET /v2/profiles for the merchant's profile, then POST /v2/payments "
                    "(testmode, with an Idempotency-Key) through the broker; prints the id.")
    pay.add_argument("org", metavar="ORG",
                     help="organization id (org_...), or an account ref with --account-ref")
    pay.add_argument("--account-ref", action="store_true", help="ORG is an account ref")
    pay.add_argument("--amount", required=True, help='amount as Mollie writes it, e.g. "10.00"')
    pay.add_argument("--currency", default="EUR", help="ISO 4217 code (default %(default)s)")
    pay.add_argument("--description", required=True, help="shown to the customer")
    pay.add_argument("--redirect-url", required=True,
                     help="where Mollie sends the customer after the checkout")
    pay.add_argument("--idempotency-key",
                     help="Idempotency-Key (default: a new random one); reuse it to retry safely")
    args = parser.parse_args(argv)

    try:
        if args.command == "create-payment":
            selector = ({"account_ref": args.org} if args.account_ref
                        else {"organization_id": args.org})
            payment = create_test_payment(args.address, args.amount, args.description,
                                          args.redirect_url, currency=args.currency,
                                          idempotency_key=args.idempotency_key,
                                          timeout=args.timeout, **selector)
            print(payment["id"])
            return 0
        if args.command == "token":
            selector = ({"account_ref": args.org} if args.account_ref
                        else {"organization_id": args.org})
            result = get_access_token(args.address, min_ttl_seconds=args.min_ttl,
                                      timeout=args.timeout, **selector)
            if not args.show_token:
                result["token"] = mask_token(result["token"])
        else:
            result = list_merchants(args.address, status=args.status, timeout=args.timeout)
    except BrokerError as e:
        print("connectbroker_client.py: %s: %s: %s" % (args.command, e.code.name, e.details),
              file=sys.stderr)
        return 3 if e.unreachable else 1
    except MollieError as e:
        print("connectbroker_client.py: %s: %s" % (args.command, e), file=sys.stderr)
        return 4
    print(json.dumps(result, indent=2, default=_json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
