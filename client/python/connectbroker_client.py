#!/usr/bin/python3
"""Example Python client of the connect-broker gRPC API (package connectbroker.v1).

A small library over the generated stubs plus a CLI:

    import connectbroker_client as cb
    tok = cb.get_access_token("127.0.0.1:50051", organization_id="org_123", min_ttl_seconds=60)
    requests.get(url, headers={"Authorization": "Bearer " + tok["token"]})

    ./connectbroker_client.py --address 127.0.0.1:50051 token org_123 [--show-token]
    ./connectbroker_client.py merchants [--status active]

The generated stubs are found in $CONNECT_BROKER_PY_STUBS (a directory holding the
`connectbroker/v1/*_pb2*.py` package), by default ../../build/python relative to this file.
Errors raise BrokerError, whose message never contains a token.
"""

import argparse
import datetime
import json
import os
import sys

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


def _call(address, method, rpc, request, timeout):
    try:
        return rpc(request, timeout=timeout)
    except grpc.RpcError as e:
        code = e.code()
        # gRPC core marks statuses that came from the server with "received from peer".
        from_peer = "received from peer" in (e.debug_error_string() or "").lower()
        unreachable = not from_peer and code in (grpc.StatusCode.UNAVAILABLE,
                                                 grpc.StatusCode.DEADLINE_EXCEEDED)
        details = e.details() or ""
        if unreachable:
            details = "cannot reach the connect-broker daemon at %s: %s" % (address, details)
        raise BrokerError(method, code, details, unreachable) from None


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
        epilog="Exit status: 0 ok, 1 error from the daemon, 2 usage, 3 daemon unreachable.")
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
    args = parser.parse_args(argv)

    try:
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
    print(json.dumps(result, indent=2, default=_json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
