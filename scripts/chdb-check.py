#!/usr/bin/env python3
"""Runs SQL files on chdb (current ClickHouse, in-process) and fails on any statement that errors.

    scripts/chdb-check.py [--schema FILE]... [--queries FILE]... [FILE]... [-v] [--unique]
                          [--http URL]

Files hold statements separated by lines that are exactly `;;` (surrounding whitespace ignored);
empty statements are skipped. All files share one throwaway chdb session, schema files first,
then query files, then the positional files, each in the order given, so queries see the tables.
Every statement is run; each failure is printed with its file, line and error, and the exit
status is 1 if any failed (2 if chdb is missing, 3 if a file is missing or none holds a
statement). -v prints each result (JSONEachRow). --unique runs each distinct statement text
once, at its first occurrence. The last line says how many statements ran on which version.

The ClickHouse store's SQL log is such a file: run the tests with WAYMARK_CLICKHOUSE_SQL_LOG=FILE
(see collector/src/store/clickhouse.rs) and replay it with `--unique FILE`, as scripts/test.sh
does. Its CREATE statements make the (empty) tables, so its SELECTs and ALTERs are checked for
syntax, functions, types and columns, on no data. Its inserts are logged as the client sends
them, `INSERT INTO t(columns) FORMAT RowBinary` without the binary rows; a statement that ends
at `FORMAT name` like that (nothing after it) is run as `INSERT INTO t(columns) SELECT columns
FROM t WHERE 0` instead: no rows, but the table and its columns are checked. (An INSERT whose
data follows FORMAT in the file is run as it is.)
With --http http://127.0.0.1:PORT the same files run on that ClickHouse server instead (e.g. the
18.16 one from scripts/clickhouse.sh), in a database made for the run and dropped after it.

chdb comes from the venv that scripts/setup.sh makes (WAYMARK_CHDB_VENV, default
/opt/waymark/chdb-venv); when the running Python has no chdb, the script re-runs itself there.
Note that chdb is ClickHouse 26.x: a pass here does not mean 18.16 accepts it
(deploy/clickhouse-notes.md lists what 18.16 lacks), and 26.x formats some output differently
(64-bit integers unquoted in JSON by default, for one).
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

VENV = os.environ.get("WAYMARK_CHDB_VENV", "/opt/waymark/chdb-venv")


def import_chdb_or_reexec():
    try:
        from chdb import session  # noqa: F401
        return session
    except ImportError:
        py = os.path.join(VENV, "bin", "python")
        if os.path.exists(py) and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
            os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])
        print(f"chdb-check: no chdb module and no venv at {VENV} (run scripts/setup.sh)", file=sys.stderr)
        sys.exit(2)


def chdb_version():
    import chdb

    return getattr(chdb, "__version__", "?")


class HttpSession:
    """The two methods of chdb's Session that main() uses, over ClickHouse's HTTP interface."""

    def __init__(self, url):
        self.url = url.rstrip("/") + "/"
        self.db = f"chdb_check_{os.getpid()}"
        self._post(f"CREATE DATABASE {self.db}", database=None)

    def _post(self, sql, fmt=None, database=""):
        params = {} if database is None else {"database": database or self.db}
        if fmt:
            params["default_format"] = fmt
        req = urllib.request.Request(
            self.url + "?" + urllib.parse.urlencode(params), data=sql.encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(e.read().decode(errors="replace")) from None

    def query(self, sql, fmt=None):
        return self._post(sql, fmt)

    def close(self):
        self._post(f"DROP DATABASE IF EXISTS {self.db}", database=None)


def split_statements(path):
    """Yields (first line number, statement text) for each `;;`-separated statement."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    buf, start = [], 1
    for i, line in enumerate(lines + [";;"], 1):
        if line.strip() == ";;":
            text = "\n".join(buf).strip()
            if text and not all(
                not ln.strip() or ln.strip().startswith("--") for ln in buf
            ):
                yield start, text
            buf, start = [], i + 1
        else:
            buf.append(line)


# An INSERT whose data would follow FORMAT in the request body (nothing after the format name).
DATALESS_INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+([\w.`]+)\s*\(([^()]*)\)\s*FORMAT\s+\w+\s*$", re.IGNORECASE
)


def runnable(sql):
    """The statement to run for `sql`: a data-less INSERT … FORMAT becomes one of no rows."""
    m = DATALESS_INSERT.match(sql)
    if not m:
        return sql
    table, columns = m.group(1), m.group(2).strip()
    return f"INSERT INTO {table}({columns}) SELECT {columns} FROM {table} WHERE 0"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schema", action="append", default=[], help="schema SQL file (run first)")
    ap.add_argument("--queries", action="append", default=[], help="query SQL file")
    ap.add_argument("files", nargs="*", help="more SQL files, run after --schema and --queries")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every result")
    ap.add_argument("--unique", action="store_true", help="run each distinct statement once")
    ap.add_argument("--http", metavar="URL", help="run on this ClickHouse server instead of chdb")
    args = ap.parse_args()
    files = args.schema + args.queries + args.files
    if not files:
        ap.error("no SQL files given")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        print(f"chdb-check: no such file: {', '.join(missing)}", file=sys.stderr)
        sys.exit(3)
    session = None if args.http else import_chdb_or_reexec()
    sys.stdout.reconfigure(line_buffering=True)

    failed = ran = total = 0
    seen = set()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chdb-check-") as tmp:
        sess = HttpSession(args.http) if args.http else session.Session(os.path.join(tmp, "db"))
        try:
            version = sess.query("SELECT version() AS v", "JSONEachRow")
            version = json.loads(str(version).strip())["v"]
            for path in files:
                for line, sql in split_statements(path):
                    total += 1
                    if args.unique:
                        if sql in seen:
                            continue
                        seen.add(sql)
                    ran += 1
                    run_sql = runnable(sql)
                    try:
                        res = sess.query(run_sql, "JSONEachRow")
                    except Exception as e:  # chdb raises ChdbError (a RuntimeError)
                        failed += 1
                        how = "" if run_sql == sql else f"\n(run as: {run_sql})"
                        print(
                            f"FAIL {path}:{line}\n{sql}{how}\n--> {str(e).strip()}\n",
                            file=sys.stderr,
                        )
                        continue
                    if args.verbose:
                        print(f"-- {path}:{line}\n{sql}\n{str(res).rstrip()}\n")
        finally:
            sess.close()
    engine = f"ClickHouse {version} at {args.http}" if args.http else f"chdb {chdb_version()} (ClickHouse {version})"
    counted = f"{ran} distinct of {total}" if args.unique else f"{ran}"
    print(
        f"chdb-check: ran {counted} statements on {engine} in {time.monotonic() - started:.1f} s,"
        f" {failed} failed"
    )
    if total == 0:
        print("chdb-check: no statements in the files", file=sys.stderr)
        sys.exit(3)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
