#!/bin/sh
# The layer rule of src/ (docs/ARCHITECTURE.md, "Order of folders").
#
# A folder may include headers from itself and from the folders before it in
# LAYERS, never from a folder after it.  Folders in one group ("migrate,storage")
# are peers: neither may include the other.  cli/ is a separate program and
# may include common/ alone.  Each .c file includes its own header first (that
# proves every header compiles on its own).
#
#   scripts/check-layers.sh [SRC_DIR]     exit 0: clean; 1: violations listed
set -eu
SRC=${1:-src}
LAYERS=${LAYERS:-"common conf qemu core vm block migrate,storage,exchange,checkpoint cluster api console server daemon"}

rank_of() {
    i=0
    for group in $LAYERS; do
        for f in $(echo "$group" | tr , ' '); do
            [ "$f" = "$1" ] && { echo "$i"; return; }
        done
        i=$((i + 1))
    done
    echo -1
}

bad=$(mktemp)
trap 'rm -f "$bad"' EXIT

for dir in "$SRC"/*/; do
    from=$(basename "$dir")
    [ "$(find "$dir" -mindepth 1 -type d | head -1)" ] &&
        echo "$dir: folders of src/ are one level deep" >>"$bad"
    from_rank=$(rank_of "$from")
    if [ "$from" != cli ] && [ "$from_rank" -lt 0 ]; then
        echo "src/$from/: not in the layer order (add it to LAYERS in $0 and to docs/ARCHITECTURE.md)" >>"$bad"
        continue
    fi
    for file in "$dir"*.[ch]; do
        [ -e "$file" ] || continue
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" |
        sed -E 's/^([0-9]+):.*"([^"]*)".*/\1 \2/' |
        while read -r line inc; do
            to=${inc%%/*}
            [ "$to" = "$inc" ] && { echo "$file:$line: \"$inc\": include as \"folder/file.h\"" >>"$bad"; continue; }
            [ "$to" = "$from" ] && continue
            if [ "$from" = cli ]; then
                [ "$to" = common ] || echo "$file:$line: \"$inc\": cli/ may include only common/" >>"$bad"
                continue
            fi
            to_rank=$(rank_of "$to")
            if [ "$to_rank" -lt 0 ]; then
                echo "$file:$line: \"$inc\": unknown folder $to/" >>"$bad"
            elif [ "$to_rank" -gt "$from_rank" ]; then
                echo "$file:$line: \"$inc\": $from/ is below $to/ (upward include)" >>"$bad"
            elif [ "$to_rank" -eq "$from_rank" ]; then
                echo "$file:$line: \"$inc\": $from/ and $to/ are peers and may not include each other" >>"$bad"
            fi
        done
        case "$file" in
        *.c)
            own="$from/$(basename "$file" .c).h"
            if [ -e "$SRC/$own" ]; then
                first=$(grep -m1 '^[[:space:]]*#[[:space:]]*include' "$file" || true)
                case "$first" in
                *"\"$own\""*) ;;
                *) echo "$file: its own header \"$own\" must be its first include" >>"$bad" ;;
                esac
            fi
            ;;
        esac
    done
done

if [ -s "$bad" ]; then
    echo "check-layers: $(wc -l <"$bad") violation(s) of the layer order ($LAYERS):" >&2
    sort "$bad" >&2
    exit 1
fi
echo "check-layers: ok ($LAYERS)"
