"""The import phase of run-bench: `metrix-relay import` of one NDJSON file of revenue events
with dedup keys (as tests/import_speed_test.cc writes them), into an empty SQLite outbox and
into an empty PostgreSQL outbox (the throwaway cluster of bench_pg.PgCluster), then the same
file again into each: new lines, then a re-run that must add nothing.

  import   the time of each of the four imports, the importer's CPU (wait4) and the server's
           (PostgreSQL), the load average beside each, and PG / SQLite for new lines and re-run

Both backends import the same file in the same run, with the same binary, one after the other.
"""

import json
import os
import time

IMPORT_APPS = ("app1", "app2")


def write_ndjson(path, lines):
    """Revenue events of two apps, every line wrapped with its own dedup key (a replayed order log)."""
    with open(path, "w") as f:
        for i in range(1, lines + 1):
            payload = (f'{{"metrixUserId":"user-{i}","eventSlug":"purchase",'
                       f'"advertisingId":"38400000-8cf0-11bd-b23e-10b96e40000d",'
                       f'"customAttributes":{{"_currency":"IRR","order":"o-{i}"}},'
                       f'"customMetrics":{{"_revenue":{i * 10}}}}}')
            f.write(f'{{"payload":{payload},"dedup_key":"order-{i}","app_id":"{IMPORT_APPS[i % 2]}"}}\n')


def loadavg():
    return open("/proc/loadavg").read().split()[0]


class ImportPhase:
    """The phase above, on a Bench of run-bench (its binaries, Child, scratch directory) and its
    PgPhases (the cluster)."""

    def __init__(self, bench, pg_phases, child_class, phase_error):
        self.bench = bench
        self.pg = pg_phases
        self.Child = child_class
        self.PhaseError = phase_error

    def one(self, db, name, expect_inserted, lines, cluster=None):
        """One import of the file into `db`, timed; its summary must say what was expected."""
        load = loadavg()
        server_cpu = cluster.cpu_s() if cluster else None
        child = self.Child([self.bench.bin["metrix-relay"], "import", "--db", db, "--json", self.file],
                           self.bench.path(f"{name}.log"), self.bench.env)
        child.wait(3600)
        if child.returncode != 0:
            raise self.PhaseError(f"import {name} exited {child.returncode}: {child.output()[-600:]}")
        # stdout (the JSON summary, over several lines) follows the progress lines on stderr.
        output = child.output()
        start = 0 if output.startswith("{") else output.find("\n{") + 1
        report = json.loads(output[start:]) if output[start:start + 1] == "{" else None
        if report is None or report["inserted"] != expect_inserted or \
                report["inserted"] + report["skipped_duplicates"] != lines:
            raise self.PhaseError(f"import {name}: expected {expect_inserted} new of {lines}: {child.output()[-400:]}")
        figures = {"seconds": round(child.elapsed, 3), "lines_per_s": round(lines / child.elapsed, 1),
                   "inserted": report["inserted"], "skipped": report["skipped_duplicates"],
                   "importer_cpu_s": round(child.cpu_s, 2), "peak_rss_mib": round(child.maxrss_kib / 1024, 1),
                   "load_before": load, "load_after": loadavg()}
        if cluster:
            figures["server_cpu_s"] = round(cluster.cpu_s() - server_cpu, 2)
        self.bench_log(f"import {name}: {lines:,} lines in {child.elapsed:.1f} s (load {load})")
        return figures

    def bench_log(self, message):
        self.pg.bench_log(message)

    def run(self, lines):
        self.file = self.bench.path("import.ndjson")
        t0 = time.monotonic()
        write_ndjson(self.file, lines)
        self.bench_log(f"wrote {lines:,} lines in {time.monotonic() - t0:.1f} s")
        sqlite_db = self.bench.path("import.db")
        self.pg._run_relay_tool(["migrate", "--db", sqlite_db], "import-sqlite-migrate")
        cluster = self.pg.server()
        cluster.psql("DROP DATABASE IF EXISTS import")
        cluster.psql("CREATE DATABASE import")
        uri = cluster.uri("import")
        self.pg._run_relay_tool(["migrate", "--db", uri], "import-pg-migrate")
        result = {"lines": lines, "file_bytes": os.path.getsize(self.file)}
        result["sqlite"] = {"new": self.one(sqlite_db, "import-sqlite-new", lines, lines),
                            "rerun": self.one(sqlite_db, "import-sqlite-rerun", 0, lines)}
        cluster.psql("CHECKPOINT")  # the migration's writes are not the import's
        result["pg"] = {"new": self.one(uri, "import-pg-new", lines, lines, cluster),
                        "rerun": self.one(uri, "import-pg-rerun", 0, lines, cluster)}
        rows = int(cluster.psql("SELECT count(*) FROM metrix_outbox", "import"))
        if rows != lines:
            raise self.PhaseError(f"import: the PostgreSQL outbox holds {rows} rows, not {lines}")
        for run in ("new", "rerun"):
            result[f"pg_over_sqlite_{run}"] = round(result["pg"][run]["seconds"] / result["sqlite"][run]["seconds"], 3)
        os.unlink(self.file)
        return result
