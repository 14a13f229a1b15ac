#!/usr/bin/env bash
# Set up and run the main job: back up an Odoo database and its filestore to
# an encrypted archive, verify it, restore it into a new database, and show
# the original and the restored copy side by side.
#
#   scripts/quickstart.sh                    # a demo Odoo-shaped database
#   scripts/quickstart.sh DBNAME DATA_DIR    # a real Odoo database; DATA_DIR
#                                            # holds filestore/DBNAME
#
# PostgreSQL: the usual PGHOST/PGPORT/PGUSER/PGPASSWORD (default here:
# 127.0.0.1:5432). Keyring: SUITE_KEYRING_FILE if set, otherwise a
# throwaway one is generated in the work dir (QUICKSTART_DIR, default
# /tmp/db-backup-suite-quickstart). Idempotent: rerunning starts afresh. The
# demo database and the restored copy are dropped at the end (KEEP=1 keeps
# the restored copy). Needs neither Odoo nor its configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}"
WORK="${QUICKSTART_DIR:-/tmp/db-backup-suite-quickstart}"
DEMO_NAME="${QUICKSTART_DEMO_DB:-bsuite_quickstart_demo}"
PY="${PYTHON:-python3}"
CLI=("$PY" -m db_backup_suite.lib)

echo "== 1/6 requirements"
"$PY" -m pip install --quiet --disable-pip-version-check -r requirements.txt \
    || { echo "pip install failed" >&2; exit 1; }
for tool in pg_dump pg_restore psql; do
    command -v "$tool" >/dev/null || { echo "$tool not found: install postgresql-client" >&2; exit 1; }
done

mkdir -p "$WORK"
chmod 700 "$WORK"
DEMO=0
if [ $# -ge 1 ]; then
    DB="$1"
    DATA_DIR="${2:-${ODOO_DATA_DIR:-$HOME/.local/share/Odoo}}"
else
    DEMO=1
    DB="$DEMO_NAME"
    DATA_DIR="$WORK/data"
fi
RESTORED="${DB}_qs_restored"
DEST="$WORK/archives"

cleanup() {
    "$PY" - "$DB" "$RESTORED" "$DATA_DIR" "$DEMO" "${KEEP:-0}" <<'EOF'
import shutil, sys
from db_backup_suite.lib.pgtools import PgParams, drop_database
db, restored, data_dir, demo, keep = sys.argv[1:]
pg = PgParams.from_env()
names = [] if keep == "1" else [restored]
if demo == "1":
    names.append(db)
for name in names:
    drop_database(pg, name)
    shutil.rmtree(f"{data_dir}/filestore/{name}", ignore_errors=True)
EOF
}

echo "== 2/6 database"
# start afresh: a previous run's restored copy (and demo database) go away
KEEP=0 cleanup
rm -rf "$DEST"
if [ "$DEMO" = 1 ]; then
    "$PY" - "$DB" "$DATA_DIR" <<'EOF'
import sys
from tests.fixtures.odoo_db import create_odoo_db
db = create_odoo_db(sys.argv[1], sys.argv[2], partners=5000, attachments=60,
                    attachment_size=20000)
print(f"demo Odoo-shaped database {db.dbname} with its filestore in {db.filestore}")
EOF
    trap cleanup EXIT
else
    echo "using database $DB, data directory $DATA_DIR"
fi

echo "== 3/6 keyring"
if [ -z "${SUITE_KEYRING_FILE:-}" ] && [ -z "${SUITE_KEYRING:-}" ]; then
    export SUITE_KEYRING_FILE="$WORK/keyring"
    if [ ! -f "$SUITE_KEYRING_FILE" ]; then
        "${CLI[@]}" keygen -o "$SUITE_KEYRING_FILE" 2>/dev/null
    fi
    echo "throwaway keyring $SUITE_KEYRING_FILE (set SUITE_KEYRING_FILE to use yours)"
else
    echo "using the configured keyring"
fi

echo "== 4/6 backup"
"${CLI[@]}" backup "$DB" --to "local:$DEST" --data-dir "$DATA_DIR" --label manual
NAME=$("${CLI[@]}" list --from "local:$DEST" --database "$DB" --json \
    | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[-1]["name"])')

echo "== 5/6 verify"
"${CLI[@]}" verify "$NAME" --from "local:$DEST"

echo "== 6/6 restore into a new database: $RESTORED"
"${CLI[@]}" restore "$NAME" --from "local:$DEST" --target "$RESTORED" --sandbox \
    --data-dir "$DATA_DIR"

echo
"$PY" - "$DB" "$RESTORED" "$DATA_DIR" <<'EOF'
import os, sys
from db_backup_suite.lib.pgtools import PgParams, row_counts
db, restored, data_dir = sys.argv[1:]
pg = PgParams.from_env()

def counts(name):
    conn = pg.connect(name)
    try:
        return row_counts(conn)
    finally:
        conn.close()

def filestore(name):
    files = size = 0
    root = os.path.join(data_dir, "filestore", name)
    for path, dirs, names in os.walk(root):
        if path == root and "checklist" in dirs:
            dirs.remove("checklist")
        for n in names:
            files += 1
            size += os.path.getsize(os.path.join(path, n))
    return files, size

a, b = counts(db), counts(restored)
width = max(len(t) for t in a | b)
print(f"{'table':<{width}}  {'original':>12}  {'restored':>12}")
bad = 0
for table in sorted(a | b):
    mark = "" if a.get(table) == b.get(table) else "   <-- differs"
    bad += bool(mark)
    print(f"{table:<{width}}  {a.get(table, '-'):>12}  {b.get(table, '-'):>12}{mark}")
fa, fb = filestore(db), filestore(restored)
print(f"{'filestore files':<{width}}  {fa[0]:>12}  {fb[0]:>12}")
print(f"{'filestore bytes':<{width}}  {fa[1]:>12}  {fb[1]:>12}")
print()
print("(the original may hold files no attachment references, garbage awaiting"
      " Odoo's collector: a backup takes only referenced files)" if fa != fb else "")
print("RESULT:", "identical row counts" if not bad else f"{bad} table(s) differ"
      " (rows written since the backup?)")
EOF
echo "archive: $DEST/$NAME"
if [ "${KEEP:-0}" != 1 ]; then
    [ "$DEMO" = 1 ] || cleanup
    echo "(the restored copy was dropped; KEEP=1 keeps it)"
fi
