#!/bin/sh
# The layer checker must pass on a clean tree and fail, naming the file, on
# each kind of violation.  Runs scripts/check-layers.sh on small fake trees.
set -eu
checker=$(cd "$(dirname "$0")/../.." && pwd)/scripts/check-layers.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

tree() {   # tree NAME: a minimal well-layered src/ in $tmp/NAME
    d="$tmp/$1/src"
    mkdir -p "$d/common" "$d/core" "$d/migrate" "$d/storage" "$d/api" "$d/cli"
    printf '#include "common/util.h"\n' >"$d/common/util.c"
    : >"$d/common/util.h"
    printf '#include "core/jobs.h"\n\n#include <stdio.h>\n\n#include "common/util.h"\n' >"$d/core/jobs.c"
    : >"$d/core/jobs.h"
    printf '#include "migrate/migrate.h"\n#include "core/jobs.h"\n' >"$d/migrate/migrate.c"
    : >"$d/migrate/migrate.h"
    printf '#include "storage/move.h"\n' >"$d/storage/move.c"
    : >"$d/storage/move.h"
    printf '#include "api/api.h"\n#include "migrate/migrate.h"\n#include "storage/move.h"\n' >"$d/api/api.c"
    : >"$d/api/api.h"
    printf '#include "common/util.h"\n' >"$d/cli/main.c"
}

expect() {   # expect NAME 0|1 PATTERN: run the checker on tree NAME
    set +e
    out=$(LAYERS="common core migrate,storage api" sh "$checker" "$tmp/$1/src" 2>&1)
    rc=$?
    set -e
    if [ "$rc" -eq "$2" ] && printf '%s' "$out" | grep -q -- "$3"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $1: expected exit $2 and \"$3\", got exit $rc:" >&2
        printf '%s\n' "$out" >&2
    fi
}

tree clean
expect clean 0 "check-layers: ok"

tree upward
printf '#include "core/jobs.h"\n#include "api/api.h"\n' >"$tmp/upward/src/core/jobs.c"
expect upward 1 "src/core/jobs.c:2: \"api/api.h\": core/ is below api/ (upward include)"

tree peers
printf '#include "storage/move.h"\n#include "migrate/migrate.h"\n' >"$tmp/peers/src/storage/move.c"
expect peers 1 "storage/ and migrate/ are peers"

tree cli
printf '#include "core/jobs.h"\n' >"$tmp/cli/src/cli/main.c"
expect cli 1 "cli/ may include only common/"

tree ownfirst
printf '#include "common/util.h"\n#include "core/jobs.h"\n' >"$tmp/ownfirst/src/core/jobs.c"
expect ownfirst 1 "its own header \"core/jobs.h\" must be its first include"

tree unknown
mkdir -p "$tmp/unknown/src/extra" && : >"$tmp/unknown/src/extra/x.c"
expect unknown 1 "src/extra/: not in the layer order"

tree deep
mkdir -p "$tmp/deep/src/core/sub"
expect deep 1 "one level deep"

tree bare
printf '#include "core/jobs.h"\n#include "jobs.h"\n' >"$tmp/bare/src/core/jobs.c"
expect bare 1 "include as \"folder/file.h\""

echo "layers self-test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
