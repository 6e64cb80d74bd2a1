#!/bin/sh
# Kamailio container entrypoint: the environment → kamailio/kamailio.cfg's -A defines.
#
#   HOTLINE_PROXY_LISTEN          udp:ADDRESS:PORT to listen on (required)
#   HOTLINE_PROXY_TRUNK_PEERS     the carrier SBC addresses, CIDR,CIDR,... (required);
#                                 calls from anywhere else get 403
#   HOTLINE_PROXY_NODES           the Asterisk nodes, HOST:PORT,HOST:PORT (required);
#                                 written to the dispatcher list
#   HOTLINE_PROXY_PROBE_INTERVAL  seconds between OPTIONS probes (default 10)
#   HOTLINE_PROXY_HOLDDOWN        seconds a node that refused a call gets no calls (300)
#   HOTLINE_PROXY_PIKE_DENSITY    requests per 2 s and address before pike blocks (50)
#
# Commands: run (default): kamailio in the foreground as the kamailio user, logging to
# stderr, pid file and control socket in its own runtime folder; check: kamailio -c with
# the same defines. Anything else is executed as is.
# Paths come from the environment so the script can be tested without Docker.
set -eu

CFG=${HOTLINE_KAMAILIO_CFG:-/etc/hotline/kamailio/kamailio.cfg}
RUN_DIR=${HOTLINE_KAMAILIO_RUN:-/run/hotline-kamailio}
KAM_USER=${HOTLINE_KAMAILIO_USER:-kamailio}

fail() {
    echo "hotline-kamailio: $*" >&2
    exit 64
}

matches() {
    # $1 value, $2 extended regular expression it must match as a whole
    printf '%s\n' "$1" | grep -Eqx "$2"
}

if [ "$#" -eq 0 ]; then
    set -- run
fi
if [ "$1" != run ] && [ "$1" != check ]; then
    exec "$@"
fi

listen=${HOTLINE_PROXY_LISTEN:-}
peers=${HOTLINE_PROXY_TRUNK_PEERS:-}
nodes=${HOTLINE_PROXY_NODES:-}
probe=${HOTLINE_PROXY_PROBE_INTERVAL:-10}
holddown=${HOTLINE_PROXY_HOLDDOWN:-300}
pike=${HOTLINE_PROXY_PIKE_DENSITY:-50}

matches "$listen" 'udp:[A-Za-z0-9.:_-]+:[0-9]+' || fail "HOTLINE_PROXY_LISTEN must be udp:ADDRESS:PORT (got '$listen')"
[ -n "$peers" ] || fail "HOTLINE_PROXY_TRUNK_PEERS is not set: the carrier SBC addresses (CIDR,CIDR,...); refusing to start an open relay"
matches "$peers" '[0-9A-Fa-f.:/]+(,[0-9A-Fa-f.:/]+)*' || fail "HOTLINE_PROXY_TRUNK_PEERS must be CIDR,CIDR,... (got '$peers')"
matches "$nodes" '[A-Za-z0-9._-]+:[0-9]+(,[A-Za-z0-9._-]+:[0-9]+)*' \
    || fail "HOTLINE_PROXY_NODES must be HOST:PORT,HOST:PORT,... (got '$nodes')"
for value in "$probe" "$holddown" "$pike"; do
    matches "$value" '[1-9][0-9]*' || fail "probe interval, hold-down and pike density must be positive integers"
done

umask 022
mkdir -p "$RUN_DIR"
list="$RUN_DIR/dispatcher.list"
{
    echo "# written by the container entrypoint from HOTLINE_PROXY_NODES"
    echo "$nodes" | tr ',' '\n' | while read -r node; do
        echo "1 sip:$node 0 0"
    done
} >"$list"

set -- "$1" -f "$CFG" \
    -A "LISTEN=$listen" -A "TRUNK_PEERS=\"$peers\"" -A "DISPATCHER_LIST=\"$list\"" \
    -A "PROBE_INTERVAL=$probe" -A "HOLDDOWN=$holddown" -A "PIKE_DENSITY=$pike"

if [ "$1" = check ]; then
    shift
    exec kamailio -c "$@"
fi
shift
if [ "$(id -u)" = 0 ] && id "$KAM_USER" >/dev/null 2>&1; then
    chown "$KAM_USER:$KAM_USER" "$RUN_DIR"
    set -- -u "$KAM_USER" -g "$KAM_USER" "$@"
fi
echo "hotline-kamailio: nodes $nodes, trunk peers $peers" >&2
exec kamailio -DD -E -P "$RUN_DIR/kamailio.pid" -Y "$RUN_DIR" "$@"
