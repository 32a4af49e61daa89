#!/usr/bin/env bash
# Entrypoint of the compose `trino` service (trinodb/trino image).
#
# The node templates are the local stack's own files, infra/trino/etc (mounted read-only at
# $TRINO_ETC_TEMPLATES): they are rendered into /etc/trino with render-template.sh, the same
# rule the stack uses. The catalog files, infra/trino/catalog, are mounted verbatim at
# /etc/trino/catalog; Trino resolves their ${ENV:…} placeholders from this container's
# environment. Then the image's own start script runs.
#
# TRINO_BIND_IP (bind address, internal address and discovery host of the single node)
# defaults to this container's address on the compose network, read from /etc/hosts.
set -euo pipefail

TRINO_ETC_TEMPLATES=${TRINO_ETC_TEMPLATES:-/opt/tickhouse/trino-etc}
RENDER=${TICKHOUSE_RENDER_TEMPLATE:-/opt/tickhouse/render-template.sh}
TRINO_ETC=${TRINO_ETC:-/etc/trino}

die() {
    printf 'trino-entrypoint: %s\n' "$*" >&2
    exit 1
}

container_ip() {
    local ip names name
    while read -r ip names; do
        [[ -z $ip || $ip == \#* ]] && continue
        for name in $names; do
            if [[ $name == "$HOSTNAME" ]]; then
                printf '%s\n' "$ip"
                return 0
            fi
        done
    done </etc/hosts
    return 1
}

if [[ -z ${TRINO_BIND_IP:-} ]]; then
    TRINO_BIND_IP=$(container_ip) || die "no /etc/hosts entry for $HOSTNAME; set TRINO_BIND_IP"
fi
export TRINO_BIND_IP

shopt -s nullglob
templates=("$TRINO_ETC_TEMPLATES"/*)
((${#templates[@]})) || die "no templates in $TRINO_ETC_TEMPLATES"
for template in "${templates[@]}"; do
    [[ -f $template ]] || continue
    bash "$RENDER" "$template" "$TRINO_ETC/${template##*/}"
done
[[ -d $TRINO_ETC/catalog ]] || die "$TRINO_ETC/catalog is missing (mount infra/trino/catalog there)"
mkdir -p "${TRINO_DATA_DIR:?}" "${TRINO_TMP_DIR:?}"

printf 'trino-entrypoint: rendered %s into %s (bind %s); catalogs: %s\n' \
    "$TRINO_ETC_TEMPLATES" "$TRINO_ETC" "$TRINO_BIND_IP" "$(cd "$TRINO_ETC/catalog" && echo *.properties)"
exec "${TRINO_RUN:-/usr/lib/trino/bin/run-trino}" "$@"
