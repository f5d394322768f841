#!/usr/bin/env bash
# Translations of every installed bdev distribution (the core, the runtime, each plugin: each
# publishes its gettext domain under the "bdev.locales" entry-point group, see bdev/i18n.py).
#
#   scripts/i18n.sh [all]      extract, update the .po catalogs, compile the .mo files
#   scripts/i18n.sh update     extract the messages and merge them into each .po (new ones
#                              empty, for a translator; vanished ones dropped), then compile
#   scripts/i18n.sh compile    only compile the .po catalogs into .mo files (what setup runs)
#
# After the action, domain names (bdev, bdev_runtime, bdev_zfs ...) limit it to those domains.
#
# The .po files are the source, kept in git; the .mo files are built by this script.
# Languages: I18N_LANGS (default "ja").  Needs Babel (pybabel) in the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
LANGS=${I18N_LANGS:-ja}
action=${1:-all}
shift || true
only=" $* "
case "$action" in
  all|update|compile) ;;
  *) echo "usage: $0 [all|update|compile]" >&2; exit 2 ;;
esac

# Babel reports every file it reads on stderr; keep only what goes wrong.
pybabel() {
  "$PYTHON" -m babel.messages.frontend "$@" 2> >(grep -Ev '^(extracting|writing|updating|creating|compiling) ' >&2)
}

failed=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One line per domain: name, directory to extract from, locale directory.
"$PYTHON" -c '
from bdev.i18n import domains
for d in domains():
    print(d.name, d.source_dir, d.localedir, sep="\t")
' > "$work/domains"

while IFS=$'\t' read -r domain source localedir; do
  if [ "$only" != "  " ] && [[ $only != *" $domain "* ]]; then
    continue
  fi
  if [ "$action" != compile ]; then
    pot="$work/$domain.pot"
    pybabel extract --no-location --sort-output --project="$domain" \
      -k _ -k N_ -k ngettext:1,2 -o "$pot" "$source"
    for lang in $LANGS; do
      po="$localedir/$lang/LC_MESSAGES/$domain.po"
      if [ -f "$po" ]; then
        pybabel update --no-fuzzy-matching --ignore-obsolete --ignore-pot-creation-date \
          -D "$domain" -l "$lang" -i "$pot" -d "$localedir"
      else
        pybabel init -D "$domain" -l "$lang" -i "$pot" -d "$localedir"
      fi
    done
  fi
  for lang in $LANGS; do
    if [ -f "$localedir/$lang/LC_MESSAGES/$domain.po" ]; then
      # pybabel compile exits 0 even when a message fails its checks: look at what it says.
      if ! out=$(pybabel compile -D "$domain" -l "$lang" -d "$localedir" 2>&1) || [[ $out == *"error:"* ]]; then
        printf '%s\n' "$out" >&2
        failed+=("$domain ($lang)")
      fi
    fi
  done
done < "$work/domains"

if [ ${#failed[@]} -gt 0 ]; then
  echo "i18n.sh: catalogs that did not compile: ${failed[*]}" >&2
  exit 1
fi
