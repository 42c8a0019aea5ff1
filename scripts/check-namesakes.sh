#!/bin/sh
# No function name is defined in two files of src/ (static ones included):
# a namesake makes a backtrace, a grep or a reader's guess point at the
# wrong file.  Reads the objects of a build (nm): check-namesakes.sh BUILD_DIR
set -eu
dir=${1:?usage: check-namesakes.sh BUILD_DIR}
dups=$(find "$dir/src" -name '*.o' | while read -r o; do
           nm "$o" | awk -v f="${o#$dir/}" '$2 ~ /^[tT]$/ && $3 !~ /\./ && $3 !~ /^_/ && $3 != "main" {print $3, f}'
       done | sort | awk '{n[$1]++; f[$1] = f[$1] " " $2} END {for (k in n) if (n[k] > 1) print k ":" f[k]}')
if [ -n "$dups" ]; then
    echo "check-namesakes: functions defined in more than one file:" >&2
    echo "$dups" >&2
    exit 1
fi
echo "check-namesakes: ok"
