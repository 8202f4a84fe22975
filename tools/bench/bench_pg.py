"""The PostgreSQL phases of run-bench: a throwaway PostgreSQL 15 cluster in the scratch
directory, durable as a bank runs it (fsync on, synchronous_commit=on), on loopback.

  pg        R_pg: metrix-relay run --until-idle draining N pre-filled rows of a PostgreSQL
            outbox against the same sink as R; where the time goes (relay CPU, PostgreSQL CPU,
            WAL bytes and WAL flushes per event)
  pg_scale  1, 2 and 4 relays draining one outbox together, against the sink answering after
            PG_SCALE_LATENCY_MS, each relay with PG_SCALE_CONCURRENCY in flight: the sink is not
            the bound, so the figure is how the relays share the outbox
  pg_mixed  a producer (pgbench, one client, single-row INSERT transactions at a fixed rate)
            alone, then beside two draining relays: commit latency p50/p99

Needs the server programs of Debian's postgresql-15 (/usr/lib/postgresql/15/bin, or
METRIX_PG_BINDIR). initdb refuses root: as root, the cluster belongs to the 'postgres' user.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_SCALE_LATENCY_MS = 20
PG_SCALE_CONCURRENCY = 32
PG_MIXED_RATE = 200  # producer transactions per second: one client, a WAL flush per commit
PG_MIXED_RELAYS = 2


def bindir():
    return os.environ.get("METRIX_PG_BINDIR") or "/usr/lib/postgresql/15/bin"


class PgError(Exception):
    pass


def pgbench_commit_times(logdir):
    """Commit times (ms) of the transactions pgbench -R ... -l logged into `logdir`, and their
    p50, p99 and max; None when it logged none. A log line is: client transaction time(us)
    script epoch us schedule_lag(us); with -R the time counts from the scheduled start, so the
    commit's own time is time - lag."""
    latencies = []
    for path in glob.glob(os.path.join(logdir, "tx*")):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 7 and fields[2].isdigit():
                    latencies.append((int(fields[2]) - int(fields[6])) / 1000)
    if not latencies:
        return None
    latencies.sort()

    def q(p):
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)

    return {"transactions": len(latencies), "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": round(latencies[-1], 3)}


class PgCluster:
    """initdb + pg_ctl start in `directory`; stop() shuts it down (the data stays for the logs)."""

    # pg_stat_statements: where the server's time goes, statement by statement (the profile).
    SETTINGS = ["synchronous_commit=on", "fsync=on", "shared_buffers=512MB", "max_wal_size=8GB",
                "max_connections=200", "listen_addresses=127.0.0.1", "shared_preload_libraries=pg_stat_statements"]

    def __init__(self):
        # Under the system's temporary directory, not the bench's own (0700, root's): the
        # server's owner must reach it.
        directory = tempfile.mkdtemp(prefix="metrix-bench-pg-")
        self.dir = directory
        self.data = os.path.join(directory, "data")
        self.as_owner = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(directory, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self._run([os.path.join(bindir(), "initdb"), "-D", self.data, "-U", "metrix", "--auth=trust", "-E", "UTF8",
                   "--locale=C.UTF-8"], "initdb")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        options = f"-p {self.port} -k {directory} " + " ".join(f"-c {s}" for s in self.SETTINGS)
        self._run([os.path.join(bindir(), "pg_ctl"), "-D", self.data, "-o", options, "-l",
                   os.path.join(directory, "server.log"), "-w", "start"], "pg_ctl start")
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.postmaster = int(f.readline())
        self.psql("CREATE EXTENSION pg_stat_statements")

    def _run(self, argv, what):
        done = subprocess.run(self.as_owner + argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise PgError(f"{what} failed: {done.stdout[-300:]}{done.stderr[-300:]}")

    def uri(self, database="postgres"):
        return f"postgresql://metrix@127.0.0.1:{self.port}/{database}"

    def psql(self, sql, database="postgres"):
        done = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.uri(database),
                               "-c", sql], capture_output=True, text=True)
        if done.returncode != 0:
            raise PgError(f"psql failed: {sql[:120]}: {done.stderr[-400:]}")
        return done.stdout.strip()

    def cpu_s(self):
        """CPU seconds the whole server has used so far: the postmaster, its children that have
        ended (its cutime/cstime) and those still running."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(stat.split("/")[2])
            if pid == self.postmaster:
                total += sum(int(x) for x in fields[11:15])
            elif int(fields[1]) == self.postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def wal(self):
        """(WAL bytes written, WAL flushes) so far."""
        row = self.psql("SELECT pg_current_wal_lsn() - '0/0', wal_sync FROM pg_stat_wal")
        written, syncs = row.split("|")
        return int(written), int(syncs)

    def statements(self, top, per):
        """The `top` statements by execution time since the last reset_statements(): each one's
        first words, calls, and server time per `per` (e.g. per event), in microseconds."""
        rows = self.psql("SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 70), calls, total_exec_time, "
                         "total_plan_time FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT " + str(top))
        out = []
        for line in rows.splitlines():
            query, calls, exec_ms, plan_ms = line.rsplit("|", 3)
            out.append({"statement": query.strip(), "calls": int(calls),
                        "exec_us_per_event": round(float(exec_ms) * 1000 / per, 1),
                        "plan_us_per_event": round(float(plan_ms) * 1000 / per, 1)})
        return out

    def reset_statements(self):
        self.psql("SELECT pg_stat_statements_reset()")

    def stop(self):
        """Stops the server and removes the cluster."""
        try:
            self._run([os.path.join(bindir(), "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"], "pg_ctl stop")
        except PgError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PgPhases:
    """The phases above, on a Bench of run-bench (its sink, binaries, Child, sizes)."""

    def __init__(self, bench, child_class, phase_error, app_id):
        self.bench = bench
        self.app_id = app_id
        self.Child = child_class
        self.PhaseError = phase_error
        self.cluster = None
        self.templates = {}  # rows -> template database name

    def check_tools(self):
        for program in ("initdb", "pg_ctl", "pgbench"):
            if not os.access(os.path.join(bindir(), program), os.X_OK):
                return f"{os.path.join(bindir(), program)} not found: apt-get install postgresql-15 (or ./scripts/install-deps)"
        if not shutil.which("psql"):
            return "psql not found: apt-get install postgresql-client-15"
        return None

    def server(self):
        if self.cluster is None:
            self.cluster = PgCluster()
        return self.cluster

    def close(self):
        if self.cluster is not None:
            shutil.copyfile(os.path.join(self.cluster.dir, "server.log"), self.bench.path("pg-server.log"))
            self.cluster.stop()

    def outbox(self, rows, name, app_id):
        """A new database `name` holding the outbox with `rows` pending rows: a copy of a template
        filled once per run (CREATE DATABASE ... TEMPLATE copies the files)."""
        pg = self.server()
        if rows not in self.templates:
            template = f"fill_{rows}"
            pg.psql(f"CREATE DATABASE {template}")
            self._run_relay_tool(["migrate", "--db", pg.uri(template)], f"{template}-migrate")
            t0 = time.monotonic()
            payload = self.bench_payload().replace("'", "''")
            pg.psql(f"INSERT INTO metrix_outbox (app_id, payload) SELECT '{app_id}', '{payload}' "
                    f"FROM generate_series(1, {rows})", template)
            pg.psql("VACUUM ANALYZE", template)
            self.bench_log(f"filled {rows:,} PostgreSQL rows in {time.monotonic() - t0:.1f} s")
            self.templates[rows] = template
        pg.psql(f"DROP DATABASE IF EXISTS {name}")
        pg.psql(f"CREATE DATABASE {name} TEMPLATE {self.templates[rows]}")
        pg.psql("CHECKPOINT")  # the copy's writes are not the relay's
        return pg.uri(name)

    def bench_payload(self):
        with open(self.bench.payload_file) as f:
            return f.read()

    def bench_log(self, message):
        print(f"[run-bench {time.strftime('%H:%M:%S')}] {message}", flush=True, file=__import__("sys").stderr)

    def _run_relay_tool(self, args, name):
        child = self.Child([self.bench.bin["metrix-relay"], *args], self.bench.path(f"{name}.log"), self.bench.env)
        child.wait(600)
        if child.returncode != 0:
            raise self.PhaseError(f"metrix-relay {args[0]} exited {child.returncode}: {child.output()[-400:]}")

    def count(self, database, where):
        return int(self.server().psql(f"SELECT count(*) FROM metrix_outbox WHERE {where}", database))

    def relays(self, uri, database, sink, name, count, concurrency, app_id):
        """`count` relays draining `uri` together until idle: their figures, pooled."""
        pg = self.server()
        before = self.count(database, "status = 'pending'")
        pg.reset_statements()
        cpu0, (wal0, sync0), t0 = pg.cpu_s(), pg.wal(), time.monotonic()
        stats0 = sink.stats()
        children = [self.Child([self.bench.bin["metrix-relay"], "run", "--db", uri, "--app-id", app_id,
                                "--endpoint", sink.base, "--concurrency", str(concurrency), "--until-idle"],
                               self.bench.path(f"{name}-{i}.log"), self.bench.env) for i in range(count)]
        try:
            for child in children:
                child.wait(900)
        finally:
            for child in children:
                child.stop(signal.SIGKILL)
        seconds = time.monotonic() - t0
        cpu, (wal, syncs) = pg.cpu_s() - cpu0, pg.wal()
        for child in children:
            if child.returncode != 0:
                raise self.PhaseError(f"metrix-relay exited {child.returncode}: {child.output()[-600:]}")
        sent = self.count(database, "status = 'sent'")
        left = self.count(database, "status <> 'sent'")
        if sent != before or left:
            raise self.PhaseError(f"relays left rows undelivered: {sent} sent of {before}, {left} not sent")
        attempts = int(pg.psql("SELECT count(*) FROM metrix_outbox_attempt", database))
        received = sink.stats()["requests"] - stats0["requests"]
        relay_cpu = sum(c.cpu_s for c in children)
        return {
            "relays": count, "rows": before, "sent": sent, "seconds": round(seconds, 3),
            "events_per_s": round(sent / seconds, 1), "concurrency": concurrency,
            "cpu_us_per_event": round(relay_cpu * 1e6 / sent, 1),
            "pg_cpu_us_per_event": round(cpu * 1e6 / sent, 1),
            "wal_bytes_per_event": round((wal - wal0) / sent, 1),
            "wal_flushes_per_1000_events": round((syncs - sync0) * 1000 / sent, 1),
            "peak_rss_mib": round(max(c.maxrss_kib for c in children) / 1024, 1),
            "duplicates": attempts - sent, "sink_requests": received,
            "profile": pg.statements(6, sent),
        }

    # ----- phases -----------------------------------------------------------------------------

    def phase_pg(self, app_id, concurrency):
        rows = self.bench.size["r_rows"]
        runs = []
        for i in range(2):  # pooled, like L: a machine getting busier or quieter does not tilt it
            uri = self.outbox(rows, f"r_{i}", app_id)
            runs.append(self.relays(uri, f"r_{i}", self.bench.sink(), f"pg-R-{i}", 1, concurrency, app_id))
            self.server().psql(f"DROP DATABASE r_{i}")
        total = sum(r["sent"] for r in runs)
        seconds = sum(r["seconds"] for r in runs)
        pooled = {"sent": total, "seconds": round(seconds, 3), "events_per_s": round(total / seconds, 1),
                  "rate_min": min(r["events_per_s"] for r in runs), "rate_max": max(r["events_per_s"] for r in runs),
                  "runs": runs}
        for key in ("cpu_us_per_event", "pg_cpu_us_per_event", "wal_bytes_per_event", "wal_flushes_per_1000_events"):
            pooled[key] = round(sum(r[key] * r["sent"] for r in runs) / total, 1)
        pooled["server_version"] = self.server().psql("SHOW server_version")
        return pooled

    def phase_pg_scale(self, app_id):
        rows = self.bench.size["pg_scale_rows"]
        sink = self.bench.sink()
        sink.control(latency_ms=PG_SCALE_LATENCY_MS)
        try:
            figures = {}
            for count in (1, 2, 4):
                uri = self.outbox(rows, f"scale_{count}", app_id)
                figures[str(count)] = self.relays(uri, f"scale_{count}", sink, f"pg-scale-{count}", count,
                                                  PG_SCALE_CONCURRENCY, app_id)
                self.server().psql(f"DROP DATABASE scale_{count}")
        finally:
            sink.control(latency_ms=0)
        figures["latency_ms"] = PG_SCALE_LATENCY_MS
        figures["ideal_one_relay_per_s"] = PG_SCALE_CONCURRENCY / (PG_SCALE_LATENCY_MS / 1000)
        return figures

    def pgbench(self, uri, seconds, name):
        """One pgbench client inserting one event per transaction at PG_MIXED_RATE: its commit
        latencies (ms) from the per-transaction log."""
        script = self.bench.path("pg-producer.sql")
        payload = self.bench_payload().replace("'", "''")
        with open(script, "w") as f:
            f.write(f"INSERT INTO metrix_outbox (app_id, payload) VALUES ('{self.app_id}', '{payload}');\n")
        logdir = self.bench.path(f"{name}-pgbench")
        os.makedirs(logdir, exist_ok=True)
        child = self.Child([os.path.join(bindir(), "pgbench"), "-n", "-c", "1", "-R", str(PG_MIXED_RATE), "-T",
                            str(seconds), "-f", script, "-l", "--log-prefix", os.path.join(logdir, "tx"), uri],
                           self.bench.path(f"{name}.log"), self.bench.env)
        child.wait(seconds + 120)
        if child.returncode != 0:
            raise self.PhaseError(f"pgbench exited {child.returncode}: {child.output()[-400:]}")
        times = pgbench_commit_times(logdir)
        if times is None:
            raise self.PhaseError(f"pgbench logged no transactions ({logdir})")
        return {**times, "rate": PG_MIXED_RATE}

    def phase_pg_mixed(self, app_id, concurrency):
        seconds = self.bench.size["mixed_s"]
        rows = self.bench.size["pg_mixed_rows"]
        uri = self.outbox(rows, "mixed", app_id)
        alone = self.pgbench(uri, seconds, "pg-mixed-alone")
        sink = self.bench.sink()
        stats0 = sink.stats()
        relays = [self.Child([self.bench.bin["metrix-relay"], "run", "--db", uri, "--app-id", app_id, "--endpoint",
                              sink.base, "--concurrency", str(concurrency), "--until-idle"],
                             self.bench.path(f"pg-mixed-relay-{i}.log"), self.bench.env) for i in range(PG_MIXED_RELAYS)]
        try:
            deadline = time.monotonic() + 20
            while sink.stats()["requests"] - stats0["requests"] < 100:
                if any(r.poll() for r in relays) or time.monotonic() > deadline:
                    raise self.PhaseError("the relays did not start draining")
                time.sleep(0.02)
            t0, start = time.monotonic(), sink.stats()["requests"]
            beside = self.pgbench(uri, seconds, "pg-mixed-beside")
            drained = sink.stats()["requests"] - start
            window = time.monotonic() - t0
            still = not any(r.poll() for r in relays)
        finally:
            for r in relays:
                r.stop(signal.SIGTERM)
            for r in relays:
                r.wait(120)
        return {"alone": alone, "beside_relays": beside, "relays": PG_MIXED_RELAYS,
                "relay_events_per_s_during": round(drained / window, 1), "relays_drained_throughout": still}
