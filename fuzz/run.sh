#!/usr/bin/env bash
# Fuzzes Trellis's parsers of untrusted text for a fixed time per target.
# Not part of CI: run it by hand (or nightly) on a quiet machine.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET]     (default 60)
#
# Environment:
#   FUZZ_TARGETS   space-separated targets to run (default: all three)
#   FUZZ_SANITIZER address (default) or none
#
# Builds the fuzz crate (its own workspace, output in fuzz/target), copies the
# committed seeds (fuzz/seeds/<target>) into the working corpus
# (fuzz/corpus/<target>, kept between runs, git-ignored), runs each target's
# libFuzzer binary with -max_len=4096 and -timeout=5 (an input that takes 5 s is a
# finding), and prints the runs and executions per second of each. Crashes, hangs
# and out-of-memory inputs land in fuzz/artifacts/<target>/; the script then
# exits 1.
#
# Only stable Rust is installed, and cargo-fuzz passes nightly-only flags
# (-Zsanitizer, -Cpasses=sancov-module, ...): RUSTC_BOOTSTRAP=1 lets stable rustc
# accept them.
set -uo pipefail

SECONDS_PER_TARGET="${1:-60}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]   (a whole number of seconds, default 60)" >&2
    exit 2
fi
TARGETS=(${FUZZ_TARGETS:-yaml_loader condition_parser list_query})
SANITIZER="${FUZZ_SANITIZER:-address}"

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
cd "$ROOT" || exit 2
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 2
fi

# The targets are built from the working tree, uncommitted changes included.
echo "== trellis at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain -- src 2>/dev/null | grep -q . && echo ' with uncommitted changes under src/')"
echo "== building the fuzz targets (sanitizer: $SANITIZER)"
cargo fuzz build --sanitizer "$SANITIZER" || exit 2
BIN_DIR="$FUZZ_DIR/target/$(rustc -vV | sed -n 's/^host: //p')/release"

# The yaml_loader target writes a scratch copy of the root project here.
TRELLIS_FUZZ_TMP="$(mktemp -d "${TMPDIR_FUZZ:-/dev/shm}/trellis-fuzz.XXXXXX" 2>/dev/null || mktemp -d)"
export TRELLIS_FUZZ_TMP
trap 'rm -rf "$TRELLIS_FUZZ_TMP"' EXIT

failed=()
summary=()
for t in "${TARGETS[@]}"; do
    bin="$BIN_DIR/$t"
    if [ ! -x "$bin" ]; then
        echo "no binary $bin" >&2
        exit 2
    fi
    corpus="$FUZZ_DIR/corpus/$t"
    artifacts="$FUZZ_DIR/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    cp -n "$FUZZ_DIR/seeds/$t"/* "$corpus"/ 2>/dev/null || true
    log="$artifacts/fuzz.log"
    marker="$(mktemp)"
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s (log: ${log#"$ROOT"/})"
    # The binary is run directly rather than through `cargo fuzz run`, so that a
    # change under src/ during the run does not trigger a rebuild between targets.
    "$bin" "$corpus" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -max_len=4096 \
        -timeout=5 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" \
        >"$log" 2>&1
    rc=$?
    found=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' -o -name 'slow-unit-*' \) -newer "$marker" | sort)
    rm -f "$marker"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    units=$(find "$corpus" -type f | wc -l)
    if [ "$rc" -ne 0 ] || [ -n "$(echo "$found" | grep -v slow-unit- || true)" ]; then
        failed+=("$t")
        status="FINDING (exit $rc)"
        echo "!! $t: libFuzzer stopped with exit code $rc"
        grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|ALARM|MS:|artifact_prefix|Test unit written)' "$log" | head -20
        for f in $found; do
            echo "   input: ${f#"$ROOT"/}"
            echo "   reproduce: $bin $f"
            echo "   minimize:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin --sanitizer $SANITIZER $t $f"
        done
    else
        status="ok"
    fi
    summary+=("$(printf '%-17s %-18s runs %-11s exec/s %-7s cov %-6s corpus %s' \
        "$t" "$status" "${runs:-?}" "${eps:-?}" "${cov:-?}" "$units")")
done

echo
echo "== results (${SECONDS_PER_TARGET}s per target, sanitizer: $SANITIZER)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "findings in: ${failed[*]} (see fuzz/artifacts/<target>/)"
    exit 1
fi
echo "no crash, hang or out-of-memory input found"
