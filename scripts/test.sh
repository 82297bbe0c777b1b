#!/usr/bin/env bash
# The whole test suite, as `cargo test --no-fail-fast` runs it (every test
# binary, every test, the doc-tests), with the binaries run side by side in
# lanes instead of one after another.
#
# Why: most binaries boot guests one at a time (a TCG guest is one busy
# core), so `cargo test` leaves the second core of a 2-core machine idle for
# most of the half hour. Lanes fill it; the longest binaries start first.
#
#   scripts/test.sh [FILTER...]     FILTER as for `cargo test` (test names)
#
#   KERNLAB_TEST_LANES   lanes (default: 2, or half the cores when more)
#
# Each binary's output is printed whole when it ends, then a table of where
# the time went (docs/ci.md). Exits non-zero when any binary failed, after
# running them all.
set -uo pipefail
cd "$(dirname "$0")/.."

cores=$(nproc)
lanes=${KERNLAB_TEST_LANES:-$(( cores >= 8 ? cores / 2 : 2 ))}
logs=$(mktemp -d "${TMPDIR:-/tmp}/kernlab-tests.XXXXXX")
trap 'rm -rf "$logs"' EXIT

# Build every test target, and learn each one's executable.
mapfile -t exes < <(cargo test --no-run --message-format=json-render-diagnostics \
  | jq -r 'select(.reason == "compiler-artifact" and .profile.test == true and .executable != null)
           | "\(.target.kind[0])\t\(.target.name)\t\(.executable)"')
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "test.sh: the build failed" >&2; exit 101; }
[ "${#exes[@]}" -gt 0 ] || { echo "test.sh: cargo listed no test executables" >&2; exit 101; }

# The longest first (measured per binary: docs/ci.md); the rest after, in
# cargo's order. A binary missing from this list only starts later.
order=(debian dump aa_corpus leak matrix snapshot bisect sampler ops faults arm64 modules kernel_sources lib)
rank() {
  local i
  for i in "${!order[@]}"; do [ "${order[$i]}" = "$1" ] && { echo "$i"; return; }; done
  echo 99
}
queue=()
while IFS=$'\t' read -r _ key kind name exe; do
  queue+=("$kind"$'\t'"$name"$'\t'"$exe")
done < <(for e in "${exes[@]}"; do
  IFS=$'\t' read -r kind name exe <<<"$e"
  key=$name; [ "$kind" = lib ] && key=lib
  printf '%02d\t%s\t%s\t%s\t%s\n' "$(rank "$key")" "$key" "$kind" "$name" "$exe"
done | sort -s -t$'\t' -k1,1n)

label() { # how cargo names a binary in its "Running" line
  case "$1" in lib) echo "unittests src/lib.rs" ;; bin) echo "unittests src/main.rs ($2)" ;; *) echo "tests/$2.rs" ;; esac
}

declare -A started=() pid_of=()
failed=()
times=()
finish() { # report the binary that ran as PID $1, exited $2
  local p=$1 rc=$2 id=${pid_of[$1]}
  local secs=$(( $(date +%s) - started[$id] ))
  echo "     Running $(label "${id%%:*}" "${id#*:}")  [${secs} s, exit $rc]"
  cat "$logs/$id.log"
  local name=${id#*:}
  case "${id%%:*}" in lib) name="$name (lib)" ;; bin) name="$name (bin)" ;; esac
  times+=("$secs"$'\t'"$name"$'\t'"$rc")
  [ "$rc" -eq 0 ] || failed+=("$name")
  unset "pid_of[$p]"
}
wait_one() {
  local done_pid rc
  wait -n -p done_pid "${!pid_of[@]}"
  rc=$?
  finish "$done_pid" "$rc"
}

t0=$(date +%s)
for entry in "${queue[@]}"; do
  IFS=$'\t' read -r kind name exe <<<"$entry"
  while [ "${#pid_of[@]}" -ge "$lanes" ]; do wait_one; done
  id="$kind:$name"
  started[$id]=$(date +%s)
  "$exe" "$@" >"$logs/$id.log" 2>&1 &
  pid_of[$!]=$id
done
while [ "${#pid_of[@]}" -gt 0 ]; do wait_one; done

# The doc-tests, as `cargo test` runs them last.
echo "   Doc-tests"
if ! cargo test --doc -q -- "$@"; then failed+=("doc-tests"); fi

echo
echo "where the time went ($lanes lanes, $(( $(date +%s) - t0 )) s of tests in all):"
printf '%s\n' "${times[@]}" | sort -t$'\t' -k1,1nr | awk -F'\t' '{ printf "  %6d s  %-20s %s\n", $1, $2, ($3 == 0 ? "ok" : "FAILED (exit " $3 ")") }'
if [ "${#failed[@]}" -gt 0 ]; then
  echo "test.sh: failed: ${failed[*]}" >&2
  exit 101
fi
