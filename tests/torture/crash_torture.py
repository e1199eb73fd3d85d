#!/usr/bin/python3
"""Crash torture: kill -9 connect-brokerd over and over while it refreshes constantly, and prove
that no merchant is ever lost.

The real daemon runs against the real mollie-sim (refresh-token rotation with replay on by
default, short access-token lifetimes, aggressive refresh policy), so refreshes are on the wire
all the time. Each round sets a random token-endpoint fault (none, a delay so the kill lands while
requests are in flight, or reply_then_drop so replies are lost), lets the daemon run a random
0.2-3 s (seeded; this is load timing, not synchronisation), kill -9s it and restarts it. At the
end the faults stop and, once every grant has refreshed after the last restart, every merchant is
checked: present, ACTIVE, served a token the simulator says is valid, and its stored refresh token
still works (a forced RefreshMerchant succeeds).

Paths come from the environment exactly as for tests/integration (CONNECT_BROKERD, MOLLIE_SIM,
CB_PY_STUBS, CB_GEN_CA). Prints the figures and `N passed, M failed` (one per check); exits 1 on
any failure. CB_KEEP_TEST_DIRS=1 (or --keep) keeps the temp directory with both logs.
"""
import argparse
import concurrent.futures
import json
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import grpc  # noqa: E402

from harness import (ACTIVE, NEEDS_REAUTHORIZATION, Env, admin_pb2, merchant_pb2,  # noqa: E402
                     token_pb2, wait_for)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Checks:
    """Counts every individual check; remembers the first failures in detail."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []
        self.lock = threading.Lock()

    def check(self, ok, what):
        with self.lock:
            if ok:
                self.passed += 1
            else:
                self.failed += 1
                self.failures.append(what)
                if len(self.failures) <= 30:
                    log(f"FAIL: {what}")
        return ok


class ClientLoad(threading.Thread):
    """A service asking for tokens of random merchants while the daemon is killed and restarted.
    UNAVAILABLE and connection errors around restarts are expected; FAILED_PRECONDITION (merchant
    must reauthorize) never is."""

    def __init__(self, env, orgs, seed):
        super().__init__(daemon=True)
        self.env = env
        self.orgs = orgs
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.ok = 0
        self.unavailable = 0
        self.lost = {}

    def run(self):
        while not self.stop.is_set():
            org = self.rng.choice(self.orgs)
            try:
                self.env.tokens.GetAccessToken(
                    token_pb2.GetAccessTokenRequest(organization_id=org), timeout=5)
                self.ok += 1
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    self.lost[org] = e.details()
                else:
                    self.unavailable += 1
            except Exception:  # channel closed under us by a restart
                self.unavailable += 1
            self.stop.wait(0.01)


def list_all(env):
    out = {}
    token = ""
    while True:
        resp = env.admin.ListMerchants(admin_pb2.ListMerchantsRequest(
            page_size=1000, page_token=token), timeout=30)
        for m in resp.merchants:
            out[m.organization_id] = m
        token = resp.next_page_token
        if not token:
            return out


def retry_unavailable(fn, attempts=20):
    for i in range(attempts):
        try:
            return fn()
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                    or i == attempts - 1:
                raise
            time.sleep(0.2 * (i + 1))


def set_fault(env, body):
    return env.sim_request("POST", "/_sim/faults", body)


def clear_faults(env):
    set_fault(env, {"target": "all", "mode": "none"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--merchants", type=int, default=100)
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--token-ttl", type=int, default=6, help="access-token lifetime (s)")
    ap.add_argument("--seed", type=int, default=None, help="default: random, printed")
    ap.add_argument("--rotate", dest="rotate", action="store_true", default=True)
    ap.add_argument("--no-rotate", dest="rotate", action="store_false")
    ap.add_argument("--import-workers", type=int, default=16)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if args.keep:
        os.environ["CB_KEEP_TEST_DIRS"] = "1"
    rng = random.Random(args.seed)
    n = args.merchants
    log(f"crash torture: merchants={n} kills={args.kills} token_ttl={args.token_ttl}s "
        f"rotate={args.rotate} seed={args.seed}")

    checks = Checks()
    started = time.monotonic()
    sim_args = ["--access-token-ttl", str(args.token_ttl)]
    if args.rotate:
        sim_args.append("--rotate-refresh-tokens")
    refresh_cfg = {
        "margin": 0.5, "jitter": 0.2,            # refresh with 30-70% of the lifetime left
        "min_serve_ttl_seconds": 1,
        "max_concurrent": 256, "rate_per_second": 5000.0, "burst": 5000,
        "backoff_initial_ms": 200, "backoff_max_ms": 2000,
    }
    env = Env(sim_args=sim_args, config_extra={"refresh": refresh_cfg})
    load = None
    figures = {}
    try:
        config = env.write_config()
        env.start_daemon(config)

        # --- merchants: bulk grants at the simulator, imported through the daemon -------------
        grants = env.sim_request("POST", "/_sim/grants", {
            "count": n, "scopes": "organizations.read payments.read payments.write"})["grants"]
        orgs = [g["organization_id"] for g in grants]

        def import_one(i_g):
            i, g = i_g
            m = retry_unavailable(lambda: env.admin.ImportMerchant(
                admin_pb2.ImportMerchantRequest(refresh_token=g["refresh_token"],
                                                account_ref=f"torture-{i}"), timeout=30))
            return g["organization_id"], m

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.import_workers) as pool:
            for org, m in pool.map(import_one, enumerate(grants)):
                checks.check(m.organization_id == org and m.status == ACTIVE,
                             f"import of {org}: got {m.organization_id} status {m.status}")
        log(f"imported {n} merchants in {time.monotonic() - t0:.1f}s")

        load = ClientLoad(env, orgs, rng.randrange(1 << 31))
        load.start()

        # --- kill -9 rounds ---------------------------------------------------------------
        # Fault plan: the first two rounds (shuffled) are a delay and a reply_then_drop round so
        # both always happen; the rest are drawn at random.
        plan = []
        for i in range(args.kills):
            if i < 2:
                plan.append(["delay", "reply_then_drop"][i])
            else:
                plan.append(rng.choices(["none", "delay", "reply_then_drop"], [2, 5, 3])[0])
        if len(plan) >= 2:
            head = plan[:2]
            rng.shuffle(head)
            plan[:2] = head
        kills_in_flight = 0
        in_flight_total = 0
        restart_secs = []
        last_restart_wall_ms = None
        for k, mode in enumerate(plan):
            if mode == "none":
                clear_faults(env)
                desc = "no fault"
            elif mode == "delay":
                delay = rng.randint(200, 800)
                set_fault(env, {"target": "token", "grant_type": "refresh_token",
                                "mode": "delay", "delay_ms": delay, "count": -1})
                desc = f"delay {delay} ms"
            else:
                # Few enough that the daemon's circuit breaker (20 transient failures in a row)
                # stays closed.
                count = rng.randint(1, 5)
                set_fault(env, {"target": "token", "grant_type": "refresh_token",
                                "mode": "reply_then_drop", "count": count})
                desc = f"reply_then_drop x{count}"
            run_for = rng.uniform(0.2, 3.0)
            time.sleep(run_for)
            in_flight = env.stats()["token_requests_in_flight"]
            env.daemon.send_signal(signal.SIGKILL)
            env.daemon.wait()
            if env.channel is not None:
                env.channel.close()
                env.channel = None
            kills_in_flight += in_flight > 0
            in_flight_total += in_flight
            t0 = time.monotonic()
            last_restart_wall_ms = int(time.time() * 1000)
            env.daemon = None
            env.start_daemon(config)  # raises if it exits (crash loop) or writes no ports file
            st = retry_unavailable(lambda: env.admin.GetStats(admin_pb2.GetStatsRequest(),
                                                              timeout=10))
            restart_secs.append(time.monotonic() - t0)
            checks.check(st.grants == n, f"kill {k + 1}: restarted daemon knows {st.grants} "
                                         f"grants, want {n}")
            log(f"kill {k + 1}/{args.kills}: {desc}, ran {run_for:.2f}s, {in_flight} token "
                f"request(s) in flight at the kill; back in {restart_secs[-1]:.2f}s")

        # --- quiesce: no faults; every grant refreshes once after the last restart ----------
        clear_faults(env)
        after_restart = list_all(env)
        base_count = {org: m.refresh_count for org, m in after_restart.items()}
        deadline_s = max(120.0, 6 * args.token_ttl + n / 20)
        t0 = time.monotonic()

        def all_refreshed():
            now = list_all(env)
            behind = [o for o in orgs if o not in now or o not in base_count
                      or now[o].refresh_count <= base_count[o]]
            lost = [o for o in orgs if o in now and now[o].status == NEEDS_REAUTHORIZATION]
            if lost and len(lost) == len(behind):
                return ("lost", lost)  # nothing left that could still refresh
            return None if behind else ("ok", now)
        try:
            result = wait_for(all_refreshed, timeout=deadline_s, interval=0.5,
                              what="every grant refreshed after the last restart")
        except AssertionError as e:
            result = ("timeout", str(e))
        checks.check(result[0] == "ok",
                     f"every grant refreshed after the last restart: {result[0]} "
                     f"{str(result[1])[:300] if result[0] != 'ok' else ''}")
        log(f"every grant refreshed after the last restart within "
            f"{time.monotonic() - t0:.1f}s" if result[0] == "ok" else "quiesce failed")
        load.stop.set()
        load.join()

        # --- verify every merchant ----------------------------------------------------------
        stats_quiet = env.stats()
        merchants = list_all(env)
        lost = set()
        for org in orgs:
            m = merchants.get(org)
            if not checks.check(m is not None, f"{org} is listed"):
                lost.add(org)
                continue
            if not checks.check(m.status == ACTIVE,
                                f"{org} is ACTIVE (is {merchant_pb2.GrantStatus.Name(m.status)}:"
                                f" {m.last_refresh_outcome})"):
                lost.add(org)

        def get_token(org):
            t = int(time.time() * 1000)
            try:
                return org, t, env.token(org=org, timeout=20), None
            except grpc.RpcError as e:
                return org, t, None, f"{e.code().name}: {e.details()}"
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            served = list(pool.map(get_token, orgs))
        truth = {t["token"]: t for t in env.truth()["access_tokens"]}
        for org, asked_ms, resp, err in served:
            if not checks.check(resp is not None, f"GetAccessToken({org}): {err}"):
                lost.add(org)
                continue
            t = truth.get(resp.access_token)
            ok = (t is not None and t["organization_id"] == org
                  and (t["valid"] or t["expires_at_ms"] > asked_ms))
            if not checks.check(ok, f"GetAccessToken({org}) served a token the simulator "
                                    f"does not consider valid: {t and {k: v for k, v in t.items() if k != 'token'}}"):
                lost.add(org)

        def force_refresh(org):
            try:
                return org, env.admin.RefreshMerchant(admin_pb2.RefreshMerchantRequest(
                    organization_id=org), timeout=30), None
            except grpc.RpcError as e:
                return org, None, f"{e.code().name}: {e.details()}"
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            refreshed = list(pool.map(force_refresh, orgs))
        for org, m, err in refreshed:
            if not checks.check(m is not None and m.status == ACTIVE,
                                f"RefreshMerchant({org}) with the stored refresh token: "
                                f"{err or merchant_pb2.GrantStatus.Name(m.status)}"):
                lost.add(org)
        stats_end = env.stats()

        # Once every grant has refreshed without faults the daemon holds each grant's current
        # refresh token: a replay now would mean it presented a token it had already replaced.
        quiet_replays = stats_end["refresh_replays"] - stats_quiet["refresh_replays"]
        checks.check(quiet_replays == 0,
                     f"no replays after quiescing (saw {quiet_replays})")

        # Mollie (the simulator) never rejected a refresh token during the whole run.
        entries = env.sim_request("GET", "/_sim/token_log")["entries"]
        rejected = {}
        for e in entries:
            if e["grant_type"] == "refresh_token" and 400 <= e["status"] < 500 \
                    and e["fault"] == "none":
                rejected.setdefault(e["organization_id"], e["status"])
        checks.check(not rejected, f"no refresh token ever rejected by the simulator "
                                   f"({len(rejected)} merchants: {sorted(rejected)[:10]})")
        lost |= set(rejected)
        checks.check(not load.lost, f"no client was ever told to reauthorize "
                                    f"({sorted(load.lost.items())[:5]})")
        lost |= set(load.lost)

        daemon_log = env.read_daemon_log()
        for needle in ("lost its grant", "needs to reauthorize"):
            hits = daemon_log.count(needle)
            checks.check(hits == 0, f"daemon log has no '{needle}' (found {hits})")
        checks.check(env.daemon.poll() is None, "daemon still running at the end")

        figures = {
            "merchants": n,
            "kills": args.kills,
            "kills_with_token_requests_in_flight": kills_in_flight,
            "token_requests_in_flight_at_kills": in_flight_total,
            "fault_rounds": {m: plan.count(m) for m in ("none", "delay", "reply_then_drop")},
            "refreshes": stats_end["refreshes"],
            "refresh_replays": stats_end["refresh_replays"],
            "refresh_attempts": stats_end["refresh_attempts"],
            "token_requests": stats_end["token_requests"],
            "max_concurrent_token_requests": stats_end["max_concurrent_token_requests"],
            "token_log_entries": len(entries),
            "client_calls_ok": load.ok,
            "client_calls_unavailable": load.unavailable,
            "max_restart_seconds": round(max(restart_secs), 2) if restart_secs else 0,
            "lost_merchants": len(lost),
            "duration_seconds": round(time.monotonic() - started, 1),
            "seed": args.seed,
            "rotate": args.rotate,
            "token_ttl": args.token_ttl,
        }
        checks.check(not lost, f"lost merchants: {sorted(lost)[:20]}")
    except Exception as e:  # noqa: BLE001 - a crash of the test is a failure, reported as such
        import traceback
        traceback.print_exc()
        checks.check(False, f"torture run aborted: {type(e).__name__}: {e}")
    finally:
        if load is not None:
            load.stop.set()
        if checks.failed:
            try:
                tail = env.read_daemon_log()[-4000:]
                print("--- daemon log (tail) ---\n" + tail, flush=True)
            except OSError:
                pass
            os.environ.setdefault("CB_KEEP_TEST_DIRS", "1")
        env.close()

    if figures:
        print("FIGURES " + json.dumps(figures, sort_keys=True), flush=True)
        for key in ("merchants", "kills", "kills_with_token_requests_in_flight", "refreshes",
                    "refresh_replays", "lost_merchants", "duration_seconds"):
            print(f"  {key}: {figures[key]}")
    for f in checks.failures[:30]:
        print("FAILED: " + f)
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
