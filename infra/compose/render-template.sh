#!/usr/bin/env bash
# render-template.sh SRC DST [MODE [OWNER]]
#
# Renders a config template for the compose deployment with the same rule as
# infra/local/stack's render_template: every ${NAME} (NAME = [A-Z_][A-Z0-9_]*) becomes the
# value of the environment variable NAME, an unset variable is an error, substituted values
# are not scanned again, and Trino's own ${ENV:NAME} placeholders (they contain a colon) are
# left for Trino to resolve. Pure bash (no perl, sed or awk), because it runs inside images
# that may lack them (the Trino image, the tickhouse image). DST is written atomically with
# MODE (default 644) and, when given, OWNER (uid:gid; needs root).
set -euo pipefail

die() {
    printf 'render-template: %s\n' "$*" >&2
    exit 1
}

(($# >= 2 && $# <= 4)) || die "usage: render-template.sh SRC DST [MODE [OWNER]]"
src=$1 dst=$2 mode=${3:-644} owner=${4:-}
[[ -f $src ]] || die "$src: no such file"

re='\$\{([A-Z_][A-Z0-9_]*)\}'
tmp=$(mktemp "$dst.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
chmod "$mode" "$tmp"

render_line() {
    local rest=$1 out='' name match
    while [[ $rest =~ $re ]]; do
        match=${BASH_REMATCH[0]} name=${BASH_REMATCH[1]}
        [[ -v $name ]] || die "$src: template variable $name is not set"
        out+=${rest%%"$match"*}${!name}
        rest=${rest#*"$match"}
    done
    printf '%s\n' "$out$rest"
}

while IFS= read -r line || [[ -n $line ]]; do
    render_line "$line"
done <"$src" >"$tmp"

if [[ -n $owner ]]; then chown "$owner" "$tmp"; fi
mv -f -- "$tmp" "$dst"
trap - EXIT
