#!/usr/bin/env bash
# The installed layout and the packaging files, against the built binary:
# - `cmake --install` into a scratch DESTDIR puts every file where a Debian system looks;
# - every long option of `metrix-relay run --help` is in the example config, in
#   metrix-relay.toml(5), in metrix-relay(1) and in the bash completion (they cannot drift);
# - the man pages render without a warning; the completion parses;
# - the unit's exposure (systemd-analyze security --offline=true) is 2.0 or lower.
# Usage: packaging_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
relay=$build/tools/metrix-relay/metrix-relay
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Installed layout (prefix /usr, as the package has it).
DESTDIR=$scratch cmake --install "$build" --prefix /usr >/dev/null
for path in usr/bin/metrix-relay usr/share/man/man1/metrix-relay.1.gz usr/share/man/man5/metrix-relay.toml.5.gz \
            usr/share/bash-completion/completions/metrix-relay usr/share/doc/metrix-relay/copyright \
            usr/share/doc/metrix-relay/changelog.Debian.gz \
            usr/share/metrix-relay/monitoring/metrix-relay-alerts.yml \
            usr/share/metrix-relay/monitoring/metrix-relay-alerts.test.yml \
            usr/share/metrix-relay/monitoring/metrix-relay-dashboard.json; do
  [ -f "$scratch/$path" ] || fail "not installed: /$path"
done
unit=$(find "$scratch" -path '*/systemd/system/metrix-relay.service' | head -1)
[ -n "$unit" ] || fail "the unit is not installed under a systemd/system directory"
config=$(find "$scratch" -path '*/metrix-relay/metrix-relay.toml' | head -1)
[ -n "$config" ] || fail "the example config is not installed"
# The unit names the binary where the configured prefix puts it (/usr/bin in the package).
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
[ -z "$unit" ] || grep -q "^ExecStart=$prefix/bin/metrix-relay run " "$unit" ||
  fail "the installed unit does not run $prefix/bin/metrix-relay"

# Every option of `run`, documented everywhere.
options=$("$relay" run --help | grep -o -- '--[a-z][a-z-]*' | sort -u | grep -v -x -e --help -e --config)
[ "$(echo "$options" | wc -l)" -ge 25 ] || fail "found only $(echo "$options" | wc -l) options in run --help"
for option in $options; do
  key=${option#--}
  grep -q -E "^#?$key = " "$src/packaging/config/metrix-relay.toml" || fail "$key: not in packaging/config/metrix-relay.toml"
  grep -q -F ".BR \"${key//-/\\-}\"" "$src/packaging/man/metrix-relay.toml.5" || fail "$key: not in metrix-relay.toml(5)"
  grep -q -F -- "${option//-/\\-}" "$src/packaging/man/metrix-relay.1" || fail "$option: not in metrix-relay(1)"
  grep -q -E -- "(^|[ \"])$option( |\"|$)" "$src/packaging/completion/metrix-relay.bash" || fail "$option: not in the bash completion"
done
# Every subcommand in the man page and the completion.
for command in run status list show requeue purge report check import enqueue migrate; do
  "$relay" "$command" --help >/dev/null || fail "metrix-relay $command --help failed"
  grep -q -E "^\.B(I)? \"?$command" "$src/packaging/man/metrix-relay.1" || fail "$command: not in metrix-relay(1)"
  grep -q -E "^        $command\)" "$src/packaging/completion/metrix-relay.bash" || fail "$command: not in the bash completion"
done

# The man pages render cleanly; the completion is valid bash.
for page in metrix-relay.1 metrix-relay.toml.5; do
  warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$src/packaging/man/$page" 2>&1 >/dev/null || true)
  [ -z "$warnings" ] || fail "$page: $warnings"
done
bash -n "$src/packaging/completion/metrix-relay.bash" || fail "the bash completion does not parse"

# The unit's exposure.
if command -v systemd-analyze >/dev/null; then
  line=$(systemd-analyze security --offline=true "$src/packaging/systemd/metrix-relay.service" 2>&1 | grep 'Overall exposure level')
  score=$(echo "$line" | grep -o -E '[0-9]+\.[0-9]+' | head -1)
  echo "unit: $line"
  awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }' || fail "the unit's exposure is ${score:-unknown}, above 2.0"
else
  echo "skipped the unit's exposure: systemd-analyze is not installed"
fi

[ "$failures" -eq 0 ] || { echo "$failures failures" >&2; exit 1; }
echo "packaging: ok"
