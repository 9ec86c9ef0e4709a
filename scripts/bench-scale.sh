#!/usr/bin/env bash
# The large-cluster benchmark of issue 13 (not part of CI): synthetic
# clusters of the `scaled` profile with 4 workloads per namespace, every
# third namespace without a default deny, and 75 policies per 100 workloads
# (about 75,000 policies at 100,000 workloads), written as JSON lists the
# way `kubectl get -o json` writes them. For each size it measures, with
# /usr/bin/time -v for wall time and peak memory:
#   load     `analyze --group namespace` on the namespaces alone is not a
#            load measure, so the loader is timed by kubefence's own phase
#            log (-v): "read", "index", "connections", "write";
#   classes  `analyze --classes -o json`
#   group    `analyze --group namespace -o json`
#   explain  `explain` of one pair across namespaces
#
# Usage: scripts/bench-scale.sh [WORKLOADS...]   (default: 10000 50000 100000)
# Environment: BENCH_DIR (default target/bench-scale) keeps the inputs and
# outputs; SEED (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 50000 100000)
dir=${BENCH_DIR:-target/bench-scale}
seed=${SEED:-1}

cargo build --release -p kubefence -p kubefence-testkit --bin kubefence --bin synth
bin=target/release/kubefence
synth=target/release/synth

# "<wall seconds> <peak RSS MiB>" from /usr/bin/time -v output.
time_of() {
    awk '/Elapsed \(wall clock\)/ { n = split($NF, t, ":"); s = 0;
            for (i = 1; i <= n; i++) s = s * 60 + t[i]; wall = s }
         /Maximum resident set size/ { rss = $NF / 1024 }
         END { printf "%.1f s, %.0f MiB", wall, rss }' "$1"
}

# Phase timings from kubefence's -v log.
phases_of() {
    grep -o 'phase=[a-z]* seconds=[0-9.]*' "$1" | sed 's/phase=//; s/ seconds=/ /' |
        awk '{ printf "%s%s %.2f s", sep, $1, $2; sep = ", " } END { print "" }'
}

run() { # name, output file, command...
    local name=$1 out=$2
    shift 2
    local rc=0
    /usr/bin/time -v "$@" >"$out" 2>"$dir/$case/$name.stderr" || rc=$?
    # explain exits 1 for "denied", which is an answer.
    if [ "$rc" -gt 1 ]; then
        echo "  $name: FAILED with exit code $rc (see $dir/$case/$name.stderr)"
        return
    fi
    printf '  %-8s %s; phases: %s; output %s\n' "$name" \
        "$(time_of "$dir/$case/$name.stderr")" "$(phases_of "$dir/$case/$name.stderr")" \
        "$(du -h "$out" | cut -f1)"
}

for workloads in "${sizes[@]}"; do
    namespaces=$((workloads / 4))
    case=w$workloads
    mkdir -p "$dir/$case"
    input=$dir/$case/input
    if [ ! -f "$input/policies.json" ]; then
        "$synth" --workloads "$workloads" --namespaces "$namespaces" --seed "$seed" \
            --open-every 3 --policies-per-100 75 --json --out "$input"
    fi
    policies=$(grep -o '"kind":"NetworkPolicy"' "$input/policies.json" | wc -l)
    echo "$workloads workloads, $namespaces namespaces, $policies policies," \
        "$(du -ch "$input"/*.json | tail -1 | cut -f1) of JSON:"
    run classes "$dir/$case/classes.json" "$bin" -v analyze -f "$input" --classes -o json
    run group "$dir/$case/group.json" "$bin" -v analyze -f "$input" --group namespace -o json
    # One pair across namespaces: the first workload of the second namespace
    # to the first of the last (names from the generator's round robin).
    from=$(grep -o '"name":"[a-z]*-00001","namespace":"ns-001"' "$input/resources.json" | head -1 | cut -d'"' -f4)
    to=$(grep -o "\"name\":\"[a-z]*-$(printf %05d $((namespaces - 1)))\",\"namespace\":\"ns-$(printf %03d $((namespaces - 1)))\"" "$input/resources.json" | head -1 | cut -d'"' -f4)
    run explain "$dir/$case/explain.txt" "$bin" -v explain -f "$input" \
        --from "ns-001/$from" --to "ns-$(printf %03d $((namespaces - 1)))/$to" --port 8080
done
