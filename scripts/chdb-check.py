#!/usr/bin/env python3
"""Runs SQL files on chdb (current ClickHouse, in-process) and fails on any statement that errors.

    scripts/chdb-check.py [--schema FILE]... [--queries FILE]... [FILE]... [-v] [--http URL]

Files hold statements separated by lines that are exactly `;;` (surrounding whitespace ignored);
empty statements are skipped. All files share one throwaway chdb session, schema files first,
then query files, then the positional files, each in the order given, so queries see the tables.
Every statement is run; each failure is printed with its file, line and error, and the exit
status is 1 if any failed (2 if chdb is missing). -v prints each result (JSONEachRow).
With --http http://127.0.0.1:PORT the same files run on that ClickHouse server instead (e.g. the
18.16 one from scripts/clickhouse.sh), in a database made for the run and dropped after it.

chdb comes from the venv that scripts/setup.sh makes (WAYMARK_CHDB_VENV, default
/opt/waymark/chdb-venv); when the running Python has no chdb, the script re-runs itself there.
Note that chdb is ClickHouse 26.x: a pass here does not mean 18.16 accepts it
(deploy/clickhouse-notes.md lists what 18.16 lacks), and 26.x formats some output differently
(64-bit integers unquoted in JSON by default, for one).
"""
import argparse
import os
import sys
import tempfile
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schema", action="append", default=[], help="schema SQL file (run first)")
    ap.add_argument("--queries", action="append", default=[], help="query SQL file")
    ap.add_argument("files", nargs="*", help="more SQL files, run after --schema and --queries")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every result")
    ap.add_argument("--http", metavar="URL", help="run on this ClickHouse server instead of chdb")
    args = ap.parse_args()
    files = args.schema + args.queries + args.files
    if not files:
        ap.error("no SQL files given")
    session = None if args.http else import_chdb_or_reexec()
    sys.stdout.reconfigure(line_buffering=True)

    failed = ran = 0
    with tempfile.TemporaryDirectory(prefix="chdb-check-") as tmp:
        sess = HttpSession(args.http) if args.http else session.Session(os.path.join(tmp, "db"))
        try:
            for path in files:
                for line, sql in split_statements(path):
                    ran += 1
                    try:
                        res = sess.query(sql, "JSONEachRow")
                    except Exception as e:  # chdb raises ChdbError (a RuntimeError)
                        failed += 1
                        print(f"FAIL {path}:{line}\n{sql}\n--> {str(e).strip()}\n", file=sys.stderr)
                        continue
                    if args.verbose:
                        print(f"-- {path}:{line}\n{sql}\n{str(res).rstrip()}\n")
        finally:
            sess.close()
    print(f"chdb-check ({args.http or 'chdb'}): ran {ran} statements, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
