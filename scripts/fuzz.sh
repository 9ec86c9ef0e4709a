#!/usr/bin/env bash
# Coverage-guided fuzzing of kubefence's input parsers (cargo fuzz + libFuzzer).
#
#   scripts/fuzz.sh [--time SECONDS | --runs N] [TARGET...]   run each target in turn
#   scripts/fuzz.sh --ci [--all]                              about 60 s in all, for CI
#   scripts/fuzz.sh --list                                    the targets and packages
#
# Two cargo-fuzz packages, by what they build:
#   fuzz/      (kubefence-core only; cold build about a minute)
#              ipset (address and port sets), references (the baseline's
#              reference finder)
#   fuzz/k8s/  (kubefence-k8s and k8s-openapi; built with 16 codegen units,
#              see K8S_BUILD_FLAGS; a cold build still takes many minutes)
#              load (the manifest loader), selector (label selectors),
#              network_policy (ports and ipBlocks)
# Without TARGET every target of both runs. --ci runs the fuzz/ targets only,
# since the fuzz/k8s/ build alone would more than double CI's time from a
# cold cache; --ci --all (or KUBEFENCE_FUZZ_ALL=1) runs all five, for CI
# that keeps fuzz/k8s/target between runs.
#
# Works on stable Rust: cargo-fuzz (pinned below) is installed into the cargo
# bin directory when missing, and the targets are built without a sanitizer
# (`--sanitizer none`; AddressSanitizer needs nightly, and the code under test
# forbids `unsafe`) but with debug assertions, so integer overflow panics.
# Seeds come from testdata/ and examples/ (derived at run time into
# fuzz/corpus/, which also keeps what the fuzzer finds) plus the few
# hand-written ones in fuzz/seeds/. A crash is saved under fuzz/artifacts/
# and fails the run; reproduce it with
#   cargo fuzz run --sanitizer none --debug-assertions TARGET fuzz/artifacts/TARGET/crash-...
#   (for a fuzz/k8s target add --fuzz-dir fuzz/k8s --codegen-units 16)
#
# --ci: when cargo-fuzz cannot be installed here, print why and exit 0 (set
# KUBEFENCE_FUZZ_REQUIRED=1 to fail instead); a target that does not build and
# a crash always fail. KUBEFENCE_SKIP_FUZZ=1 skips the CI run.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
BUILD_FLAGS=(--sanitizer none --debug-assertions)
# cargo-fuzz builds in release mode with one codegen unit (it passes
# -Ccodegen-units=1 in RUSTFLAGS, over any profile setting), so ThinLTO can
# inline across the instrumented code. For kubefence-k8s, whose serde and
# k8s-openapi code is huge, one unit made the cold build take over 45 min of
# LLVM on one core; 16 units build in a fraction of that for somewhat slower
# runs (`--codegen-units` is cargo-fuzz's own knob for this trade).
K8S_BUILD_FLAGS=(--codegen-units 16)
CI_SECONDS=60
CORE_TARGETS=(ipset references)
K8S_TARGETS=(load selector network_policy)

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

# The package directory of a target (empty when there is no such target).
fuzz_dir() {
    if [ -f "fuzz/fuzz_targets/$1.rs" ]; then
        echo fuzz
    elif [ -f "fuzz/k8s/fuzz_targets/$1.rs" ]; then
        echo fuzz/k8s
    fi
}

# The build flags of a target's package (the same for build and run, or
# `cargo fuzz run` would build again).
build_flags() {
    if [ "$(fuzz_dir "$1")" = fuzz/k8s ]; then
        echo "${BUILD_FLAGS[@]}" "${K8S_BUILD_FLAGS[@]}"
    else
        echo "${BUILD_FLAGS[@]}"
    fi
}

ci=false
all="${KUBEFENCE_FUZZ_ALL:-0}"
seconds=""
runs=""
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --ci) ci=true ;;
        --all) all=1 ;;
        --time) seconds="${2:?--time needs seconds}"; shift ;;
        --runs) runs="${2:?--runs needs a number}"; shift ;;
        --list)
            for t in "${CORE_TARGETS[@]}" "${K8S_TARGETS[@]}"; do
                echo "$t ($(fuzz_dir "$t")/)"
            done
            exit 0 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) targets+=("$1") ;;
    esac
    shift
done
if [ ${#targets[@]} -eq 0 ]; then
    if $ci && [ "$all" != 1 ]; then
        targets=("${CORE_TARGETS[@]}")
    else
        targets=("${CORE_TARGETS[@]}" "${K8S_TARGETS[@]}")
    fi
fi
for t in "${targets[@]}"; do
    [ -n "$(fuzz_dir "$t")" ] || { echo "fuzz.sh: no target $t (see --list)" >&2; exit 2; }
done
if $ci; then
    seconds=$(( CI_SECONDS / ${#targets[@]} ))
    runs=""
elif [ -z "$seconds" ] && [ -z "$runs" ]; then
    seconds=60
fi

# Cannot fuzz here: in CI a message and success, else an error.
cannot() {
    if $ci && [ "${KUBEFENCE_FUZZ_REQUIRED:-0}" != 1 ]; then
        echo "fuzz: SKIPPED: $1 (the fuzz run needs cargo-fuzz and a C++ compiler for libFuzzer)"
        exit 0
    fi
    echo "fuzz.sh: $1" >&2
    exit 1
}

if $ci && [ "${KUBEFENCE_SKIP_FUZZ:-0}" = 1 ]; then
    echo "fuzz: SKIPPED: KUBEFENCE_SKIP_FUZZ=1"
    exit 0
fi

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked \
        || cannot "cargo-fuzz $CARGO_FUZZ_VERSION could not be installed"
fi

build_log=$(mktemp)
trap 'rm -f "$build_log"' EXIT
echo "fuzz: building ${targets[*]}"
for t in "${targets[@]}"; do
    start=$SECONDS
    read -r -a flags <<<"$(build_flags "$t")"
    if ! cargo fuzz build --fuzz-dir "$(fuzz_dir "$t")" "${flags[@]}" "$t" >"$build_log" 2>&1; then
        tail -n 30 "$build_log" >&2
        # Not a reason to skip: a target that no longer compiles against the
        # code it fuzzes is a broken test, and CI must say so.
        echo "fuzz.sh: the fuzz target $t did not build (output above)" >&2
        exit 1
    fi
    echo "fuzz: built $t in $(( SECONDS - start )) s"
done

echo "fuzz: deriving seeds from testdata/ and examples/"
cargo run --quiet -p kubefence-k8s --example fuzz_seeds -- fuzz/corpus testdata examples

limit=()
[ -n "$seconds" ] && limit+=("-max_total_time=$seconds")
[ -n "$runs" ] && limit+=("-runs=$runs")

failed=()
summary=()
for t in "${targets[@]}"; do
    # Inputs stay small: a property is about the shape of one object or
    # line, and a long input only slows every run down.
    max_len=4096
    extra=()
    # The loader's coverage map is huge (k8s-openapi and serde: 47k edges,
    # 146k features), and libFuzzer's entropic schedule then spends most of
    # each run updating feature frequencies: a profile of load put 87% of
    # the time there and 7% in the loader. Without it, 3.5 times the runs.
    [ "$t" = load ] && extra+=(-entropic=0)
    corpora=("fuzz/corpus/$t")
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    [ -d "fuzz/seeds/$t" ] && corpora+=("fuzz/seeds/$t")
    log="fuzz/artifacts/$t.log"
    echo "fuzz: running $t (${limit[*]})"
    start=$SECONDS
    status=0
    read -r -a flags <<<"$(build_flags "$t")"
    cargo fuzz run --fuzz-dir "$(fuzz_dir "$t")" "${flags[@]}" "$t" "${corpora[@]}" -- \
        "${limit[@]}" "${extra[@]}" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    elapsed=$(( SECONDS - start ))
    execs=$(awk '/^stat::number_of_executed_units:/ {n = $2} END {print n}' "$log")
    rate=$(awk '/^stat::average_exec_per_sec:/ {n = $2} END {print n}' "$log")
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    corp=$(grep -Eo 'corp: [0-9]+/[0-9]+[bKMG]?b' "$log" | tail -n 1)
    line="$t: ${execs:-?} executions, ${rate:-?} exec/s, ${cov:-cov: ?}, ${corp:-corp: ?}, ${elapsed} s"
    if [ "$status" -ne 0 ]; then
        grep -E 'panicked at|Test unit written to|SUMMARY|ERROR: libFuzzer' "$log" | head -n 10 >&2 || true
        line="$line: FAILED (exit $status, log $log)"
        failed+=("$t")
    fi
    echo "fuzz: $line"
    summary+=("$line")
done

echo "fuzz: summary"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (crash inputs under fuzz/artifacts/)" >&2
    exit 1
fi
