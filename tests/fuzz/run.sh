#!/bin/sh
# run.sh BINDIR SECONDS TARGET...: run each libFuzzer target for SECONDS on
# tests/fuzz/corpus/TARGET (one job: no -fork/-jobs), new inputs going to
# build/fuzz/corpus/TARGET so the checked-in seeds stay small.  Prints the
# executions per target; fails on the first crash, hang or leak (its input is
# left in build/fuzz/artifacts/).
set -eu
bindir=$1; secs=$2; shift 2
out=build/fuzz
mkdir -p "$out/artifacts"
summary=""
for t in "$@"; do
    seeds=tests/fuzz/corpus/$t
    work=$out/corpus/$t
    mkdir -p "$work" "$seeds"
    log=$out/$t.log
    echo "== $t: ${secs}s on $seeds ($(ls "$seeds" | wc -l) seeds)"
    if ! "$bindir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$out/artifacts/$t-" "$work" "$seeds" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $t FAILED (log: $log)" >&2
        exit 1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    echo "   $t: ${execs:-?} executions"
    summary="$summary $t=${execs:-?}"
done
echo "fuzz: all passed:$summary"
