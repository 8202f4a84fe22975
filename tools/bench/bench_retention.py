#!/usr/bin/env python3
"""Retention without bloat on a PostgreSQL outbox (phase `retention` of run-bench, or alone).

  sizes  For each variant of the outbox tables' storage settings (VARIANTS), in one throwaway
         cluster (bench_pg.PgCluster): N events enqueued, relayed by `metrix-relay run
         --until-idle` to fake-metrix, then deleted by `metrix-relay purge --older-than 0ms`
         (which vacuums the tables). The heap and index sizes and the dead tuples of
         metrix_outbox and metrix_outbox_attempt after relaying and after the purge.
  p99    With the last variant, a producer (pgbench, one client, one INSERT per transaction at
         PRODUCER_RATE/s) alone, then beside that variant's `metrix-relay purge` of the N sent
         rows of the table it inserts into: commit p50/p99 and the ratio beside/alone (<= 2).

usage: tools/bench/bench_retention.py [--build DIR] [--rows N] [--quick]

Needs what bench_pg.py needs (postgresql-15's programs, psql, pgbench), and the built
metrix-relay and fake-metrix.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pg import PgCluster, PgError, bindir, pgbench_commit_times  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_ID = "app1"
PAYLOAD = ('{"metrixUserId":"user-000000000001","metrixSessionId":"session-0000000000000001",'
           '"eventSlug":"purchase","advertisingId":"38400000-8cf0-11bd-b23e-10b96e40000d",'
           '"customAttributes":{"_currency":"IRR","channel":"web","campaign":"spring-sale"},'
           '"customMetrics":{"_revenue":53700,"items":3},"deviceIp":"203.0.113.7"}')
PRODUCER_RATE = 200
TABLES = ("metrix_outbox", "metrix_outbox_attempt")
# Storage settings tried on both tables, as ALTER TABLE ... SET (...) after migrate.
VARIANTS = {
    "default": "",
    # autovacuum after 2% of the table changed (plus 5,000 rows) rather than 20%, its work
    # throttled as by default
    "autovacuum": "autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 5000, "
                  "autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02",
    "autovacuum+fillfactor80": "autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 5000, "
                               "autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02, "
                               "fillfactor = 80",
}


class BenchError(Exception):
    pass


def log(message):
    print(f"[bench-retention {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Retention:
    def __init__(self, build, work, rows, key="bench-retention-key"):
        self.relay = os.path.join(build, "tools/metrix-relay/metrix-relay")
        self.fake = os.path.join(build, "tools/fake-metrix/fake-metrix")
        for program in (self.relay, self.fake):
            if not os.access(program, os.X_OK):
                raise BenchError(f"not built: {program}")
        self.work = work
        self.rows = rows
        self.env = dict(os.environ, METRIX_DEV_KEY=key)
        self.pg = None
        self.sink = None

    def path(self, name):
        return os.path.join(self.work, name)

    def run(self, argv, name, timeout=3600):
        with open(self.path(f"{name}.log"), "wb") as out:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, timeout=timeout)
        if done.returncode != 0:
            raise BenchError(f"{os.path.basename(argv[0])} {argv[1]} exited {done.returncode} (see {name}.log)")

    def start_sink(self):
        port_file = self.path("fake-metrix.port")
        self.sink = subprocess.Popen([self.fake, "--any-key", "--threads", "128", "--port-file", port_file],
                                     stdout=subprocess.DEVNULL, stderr=open(self.path("fake-metrix.log"), "wb"))
        deadline = time.monotonic() + 20
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if self.sink.poll() is not None or time.monotonic() > deadline:
                raise BenchError("fake-metrix did not start")
            time.sleep(0.02)
        self.endpoint = f"http://127.0.0.1:{int(open(port_file).read())}"

    def outbox(self, name, settings):
        """A new database holding the outbox, its tables with `settings`, filled with N pending rows."""
        self.pg.psql(f"CREATE DATABASE {name}")
        uri = self.pg.uri(name)
        self.run([self.relay, "migrate", "--db", uri], f"{name}-migrate")
        if settings:
            for table in TABLES:
                self.pg.psql(f"ALTER TABLE {table} SET ({settings})", name)
        payload = PAYLOAD.replace("'", "''")
        self.pg.psql(f"INSERT INTO metrix_outbox (app_id, payload) SELECT '{APP_ID}', '{payload}' "
                     f"FROM generate_series(1, {self.rows})", name)
        self.pg.psql("CHECKPOINT")
        return uri

    def sizes(self, database):
        time.sleep(1.5)  # the statistics of sessions that just ended reach pg_stat_user_tables
        out = {}
        for table in TABLES:
            row = self.pg.psql(f"SELECT pg_relation_size('{table}'), pg_indexes_size('{table}'), "
                               f"pg_total_relation_size('{table}'), n_live_tup, n_dead_tup, autovacuum_count "
                               f"FROM pg_stat_user_tables WHERE relname = '{table}'", database)
            heap, indexes, total, live, dead, autovacuums = (int(v) for v in row.split("|"))
            out[table] = {"heap_mb": mb(heap), "indexes_mb": mb(indexes), "total_mb": mb(total), "live_rows": live,
                          "dead_rows": dead, "autovacuums": autovacuums}
        return out

    def relay_all(self, uri, name):
        t0 = time.monotonic()
        self.run([self.relay, "run", "--db", uri, "--app-id", APP_ID, "--endpoint", self.endpoint,
                  "--concurrency", "64", "--until-idle"], f"{name}-relay")
        return round(time.monotonic() - t0, 1)

    def purge_argv(self, uri):
        return [self.relay, "purge", "--db", uri, "--older-than", "0ms"]

    def variant(self, name, settings, producer_s=None):
        """N events relayed and purged; with `producer_s`, the producer measured alone before the
        purge and beside it (the sizes after it then hold the producer's few pending rows)."""
        database = "v_" + name.replace("+", "_")
        uri = self.outbox(database, settings)
        relay_s = self.relay_all(uri, database)
        sent = int(self.pg.psql("SELECT count(*) FROM metrix_outbox WHERE status = 'sent'", database))
        if sent != self.rows:
            raise BenchError(f"{name}: {sent} of {self.rows} rows sent")
        after_relay = self.sizes(database)
        out = {"settings": settings or "(PostgreSQL's defaults)", "relay_s": relay_s,
               "events_per_s": round(self.rows / relay_s, 1)}
        if producer_s:
            out["producer"] = self.producer_beside_purge(uri, database, producer_s)
            out["purge_s"] = out["producer"]["purge_s"]
        else:
            t0 = time.monotonic()
            self.run(self.purge_argv(uri), f"{database}-purge")
            out["purge_s"] = round(time.monotonic() - t0, 1)
        out["after_relay"], out["after_purge"] = after_relay, self.sizes(database)
        log(f"{name}: relayed in {relay_s} s, purged in {out['purge_s']} s; outbox "
            f"{after_relay['metrix_outbox']['total_mb']} -> {out['after_purge']['metrix_outbox']['total_mb']} MB")
        return out

    def pgbench(self, uri, seconds, name):
        """Commit latencies (ms) of one client inserting an event per transaction at PRODUCER_RATE."""
        script = self.path("producer.sql")
        with open(script, "w") as f:
            f.write(f"INSERT INTO metrix_outbox (app_id, payload) VALUES ('{APP_ID}', '{PAYLOAD}');\n")
        logdir = self.path(f"{name}-pgbench")
        os.makedirs(logdir, exist_ok=True)
        self.run([os.path.join(bindir(), "pgbench"), "-n", "-c", "1", "-R", str(PRODUCER_RATE), "-T", str(seconds),
                  "-f", script, "-l", "--log-prefix", os.path.join(logdir, "tx"), uri], name, timeout=seconds + 120)
        times = pgbench_commit_times(logdir)
        if times is None:
            raise BenchError(f"pgbench logged no transactions ({logdir})")
        return times

    def producer_beside_purge(self, uri, database, seconds):
        """pgbench alone, then beside `metrix-relay purge` of the N sent rows (and their attempts)
        of the table it inserts into."""
        self.pg.psql("CHECKPOINT")
        alone = self.pgbench(uri, seconds, f"{database}-producer-alone")
        purge = subprocess.Popen(self.purge_argv(uri), stdout=open(self.path(f"{database}-purge.log"), "wb"),
                                 stderr=subprocess.STDOUT, env=self.env)
        t0 = time.monotonic()
        while int(self.pg.psql("SELECT count(*) FROM metrix_outbox WHERE status = 'sent'", database)) == self.rows:
            if purge.poll() is not None or time.monotonic() - t0 > 30:
                raise BenchError("the purge did not start deleting")
            time.sleep(0.05)
        beside = self.pgbench(uri, seconds, f"{database}-producer-beside")
        still_purging = purge.poll() is None
        purge.wait(3600)
        purge_s = round(time.monotonic() - t0, 1)
        if purge.returncode != 0:
            raise BenchError(f"purge exited {purge.returncode}")
        return {"rate": PRODUCER_RATE, "seconds": seconds, "alone": alone, "beside_purge": beside,
                "purge_rows": self.rows, "purge_s": purge_s, "purge_outlasted_producer": still_purging,
                "ratio_p99": round(beside["p99_ms"] / alone["p99_ms"], 2) if alone["p99_ms"] else None}

    def measure(self, variants, seconds):
        self.pg = PgCluster()
        try:
            self.start_sink()
            results = {"rows": self.rows, "server_version": self.pg.psql("SHOW server_version"),
                       "loadavg_start": open("/proc/loadavg").read().split()[0], "variants": {}}
            for i, name in enumerate(variants):
                # The producer beside the last variant's purge, for a window the purge outlasts
                # (as long as the first purge took, less a margin).
                window = None
                if i == len(variants) - 1:
                    first = results["variants"].get(variants[0], {}).get("purge_s")
                    window = max(2, min(seconds, int(0.6 * first))) if first else seconds
                results["variants"][name] = self.variant(name, VARIANTS[name], window)
            results["producer"] = results["variants"][variants[-1]]["producer"]
            results["loadavg_end"] = open("/proc/loadavg").read().split()[0]
            return results
        finally:
            if self.sink is not None:
                self.sink.send_signal(signal.SIGTERM)
                self.sink.wait(20)
            self.pg.stop()


def mb(size):
    return round(size / 1e6, 1)


def report(r):
    lines = [f"retention: {r['rows']:,} events relayed and purged per variant (PostgreSQL {r['server_version']}, "
             f"load {r['loadavg_start']} -> {r['loadavg_end']})"]
    for name, v in r["variants"].items():
        lines.append(f"  {name}: relayed at {v['events_per_s']:,} ev/s, purge {v['purge_s']} s")
        for when in ("after_relay", "after_purge"):
            for table in TABLES:
                t = v[when][table]
                lines.append(f"    {when:<12} {table:<22} heap {t['heap_mb']:>8} MB  indexes {t['indexes_mb']:>8} MB  "
                             f"total {t['total_mb']:>8} MB  live {t['live_rows']:>9}  dead {t['dead_rows']:>9}  "
                             f"autovacuums {t['autovacuums']}")
    p = r["producer"]
    lines.append(f"  producer {p['rate']}/s p50/p99 alone {p['alone']['p50_ms']}/{p['alone']['p99_ms']} ms, beside a "
                 f"purge of {p['purge_rows']:,} sent rows {p['beside_purge']['p50_ms']}/{p['beside_purge']['p99_ms']} ms: "
                 f"p99 ratio {p['ratio_p99']} (target <= 2; purge outlasted the producer: {p['purge_outlasted_producer']})")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(REPO, "build"))
    parser.add_argument("--rows", type=int, default=1000000, help="events per variant [1,000,000]")
    parser.add_argument("--quick", type=int, nargs="?", const=50000, metavar="N",
                        help="the short form: N events (default 50,000), shorter producer windows")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"among {','.join(VARIANTS)}")
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args()
    rows = args.quick or args.rows
    work = tempfile.mkdtemp(prefix="metrix-bench-retention-")
    try:
        r = Retention(args.build, work, rows).measure(args.variants.split(","), 5 if args.quick else 20)
    except (BenchError, PgError, subprocess.TimeoutExpired) as e:
        sys.exit(f"bench_retention: {e} (logs in {work})")
    print(report(r))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
