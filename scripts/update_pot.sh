#!/usr/bin/env bash
# Regenerates each addon's translation template, <addon>/i18n/<addon>.pot,
# from a fresh database where the suite is installed (Odoo's own
# --i18n-export). Needs `import odoo` and PostgreSQL, as the Odoo test tier.
#   scripts/update_pot.sh [addon ...]        (default: every addon)
set -euo pipefail
cd "$(dirname "$0")/.."
# the addons import the shared core, suite_core, from the repository root
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
addons=("$@")
if [ ${#addons[@]} -eq 0 ]; then
    for manifest in */__manifest__.py; do addons+=("$(dirname "$manifest")"); done
fi
odoo_root=$(python3 -c 'import odoo, os; print(os.path.dirname(os.path.dirname(odoo.__file__)))')
addons_path="$odoo_root/odoo/addons,$PWD"
[ -d "$odoo_root/addons" ] && addons_path="$odoo_root/addons,$addons_path"
db="suite_pot_$$"
data_dir=$(mktemp -d)
pg=(--db_host "${PGHOST:-127.0.0.1}" --db_port "${PGPORT:-5432}" --db_user "${PGUSER:-root}")
cleanup() {
    dropdb --if-exists -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" -U "${PGUSER:-root}" "$db" || true
    rm -rf "$data_dir"
}
trap cleanup EXIT
all=$(IFS=,; echo "${addons[*]}")
python3 -m odoo -d "$db" "${pg[@]}" --addons-path "$addons_path" --data-dir "$data_dir" \
    -i "$all" --without-demo all --stop-after-init --log-level warn
for addon in "${addons[@]}"; do
    mkdir -p "$addon/i18n"
    python3 -m odoo -d "$db" "${pg[@]}" --addons-path "$addons_path" --data-dir "$data_dir" \
        --modules "$addon" --i18n-export "$addon/i18n/$addon.pot" --log-level warn
    echo "$addon/i18n/$addon.pot: $(grep -c '^msgid ' "$addon/i18n/$addon.pot") strings"
done
