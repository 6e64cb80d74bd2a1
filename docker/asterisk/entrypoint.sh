#!/bin/sh
# Asterisk container entrypoint.
#
# 1. Refuse to start without an AMI secret: HOTLINE_AMI_SECRET, or HOTLINE_AMI_SECRET_FILE
#    (a Docker secret). Without it manager.conf's hotline-gateway user has no secret.
# 2. Install the repository's asterisk_conf/*.conf (mounted read-only) into /etc/asterisk,
#    then the site's own files on top (carrier trunk, queue members, agent secrets:
#    everything that must not live in the repository).
# 3. Write hotline-secrets/ami-gateway.conf (the include manager.conf expects) and, unless
#    the site brings one, hotline-globals.conf (FastAGI primary and backup, missed-call Redis).
#    One node of several (docker-compose.cluster.yml), each optional:
#      HOTLINE_NODE_NAME    systemname in asterisk.conf: call ids (UNIQUEID) unique across nodes
#      HOTLINE_SIP_BIND     ADDRESS:PORT of the PJSIP transport instead of 127.0.0.1:5060
#      HOTLINE_TRUNK_PROXY  the SIP proxy's address: calls from it are the carrier trunk's
#                           (an identify section added to the site's pjsip-carrier.conf)
#      HOTLINE_AGI_BACKUP_URL  the other node's gateway (HOTLINE_AGI_BACKUP)
# 4. As root: hand the files to the asterisk group, prepare runtime directories, and let
#    the gateway's log group (gid 2345) read /var/log/asterisk (queue_log).
# 5. exec the command (asterisk -f …).
#
# Paths come from the environment so the script can be tested without Docker.
set -eu

CONF_SRC=${HOTLINE_CONF_SRC:-/etc/hotline/asterisk_conf}
SITE_DIR=${HOTLINE_SITE_CONF:-/etc/hotline/site}
ETC=${ASTERISK_ETC:-/etc/asterisk}
LOG_DIR=${ASTERISK_LOG_DIR:-/var/log/asterisk}
AST_USER=${ASTERISK_USER:-asterisk}
LOG_GID=${HOTLINE_LOG_GID:-2345}

fail() {
    echo "hotline-asterisk: $*" >&2
    exit 64
}

one_line() {
    # $1 name, $2 value: no line breaks may reach a configuration file
    case "$2" in
        *"
"*) fail "$1 must be a single line" ;;
    esac
}

# -- 1. the AMI secret ----------------------------------------------------------------
secret=${HOTLINE_AMI_SECRET:-}
if [ -z "$secret" ] && [ -n "${HOTLINE_AMI_SECRET_FILE:-}" ]; then
    [ -r "$HOTLINE_AMI_SECRET_FILE" ] || fail "cannot read HOTLINE_AMI_SECRET_FILE=$HOTLINE_AMI_SECRET_FILE"
    secret=$(cat "$HOTLINE_AMI_SECRET_FILE")
fi
[ -n "$secret" ] || fail "HOTLINE_AMI_SECRET (or HOTLINE_AMI_SECRET_FILE) is not set; refusing to start without the AMI secret"
one_line HOTLINE_AMI_SECRET "$secret"
case "$secret" in
    *[!A-Za-z0-9._~+/=@%:,!-]*) fail "HOTLINE_AMI_SECRET may only use letters, digits and ._~+/=@%:,!- (no spaces or ;)" ;;
esac
[ "${#secret}" -ge 16 ] || fail "HOTLINE_AMI_SECRET must be at least 16 characters"

agi_url=${HOTLINE_AGI_URL:-agi://127.0.0.1:4573}
redis_url=${HOTLINE_MISSED_REDIS:-redis://127.0.0.1:6379/0}
one_line HOTLINE_AGI_URL "$agi_url"
one_line HOTLINE_MISSED_REDIS "$redis_url"
agi_backup=${HOTLINE_AGI_BACKUP_URL:-}
one_line HOTLINE_AGI_BACKUP_URL "$agi_backup"
node_name=${HOTLINE_NODE_NAME:-}
sip_bind=${HOTLINE_SIP_BIND:-}
trunk_proxy=${HOTLINE_TRUNK_PROXY:-}
trunk_endpoint=${HOTLINE_TRUNK_ENDPOINT:-carrier}
matches() {
    # $1 value, $2 extended regular expression it must match as a whole
    printf '%s\n' "$1" | grep -Eqx "$2"
}
[ -z "$node_name" ] || matches "$node_name" '[A-Za-z0-9_-]{1,32}' || fail "HOTLINE_NODE_NAME must be 1-32 of A-Z a-z 0-9 _ -"
[ -z "$sip_bind" ] || matches "$sip_bind" '[0-9A-Za-z.:_-]+:[0-9]+' || fail "HOTLINE_SIP_BIND must be ADDRESS:PORT"
[ -z "$trunk_proxy" ] || matches "$trunk_proxy" '[0-9A-Fa-f.:/]+' || fail "HOTLINE_TRUNK_PROXY must be an IP address"
matches "$trunk_endpoint" '[A-Za-z0-9_-]+' || fail "HOTLINE_TRUNK_ENDPOINT must be an endpoint name"

# -- 2. configuration -----------------------------------------------------------------------
found=no
for conf in "$CONF_SRC"/*.conf; do
    [ -e "$conf" ] && found=yes
done
[ "$found" = yes ] || fail "no *.conf in $CONF_SRC (mount the repository's asterisk_conf/ there)"

umask 027
mkdir -p "$ETC/hotline-secrets"
cp "$CONF_SRC"/*.conf "$ETC"/
if [ -d "$SITE_DIR" ]; then
    cp -R "$SITE_DIR"/. "$ETC"/
fi

# -- 2b. one node of several --------------------------------------------------------------------
replace_line() {
    # $1 file, $2 the exact line to replace (it must be there exactly once), $3 its replacement
    # (awk -v: \n in $3 starts a new line)
    count=$(grep -cxF -- "$2" "$1" || true)
    [ "$count" = 1 ] || fail "$(basename "$1"): expected the line '$2' once, found it $count times"
    awk -v old="$2" -v new="$3" '$0 == old { print new; next } { print }' "$1" >"$1.new"
    mv "$1.new" "$1"
}
if [ -n "$node_name" ]; then
    replace_line "$ETC/asterisk.conf" "[options]" "[options]\nsystemname = $node_name"
fi
if [ -n "$sip_bind" ]; then
    replace_line "$ETC/pjsip.conf" "bind = 127.0.0.1:5060" "bind = $sip_bind"
fi
if [ -n "$trunk_proxy" ]; then
    [ -e "$ETC/pjsip-carrier.conf" ] || fail "HOTLINE_TRUNK_PROXY needs the site's pjsip-carrier.conf (the $trunk_endpoint endpoint)"
    printf '\n; written by the container entrypoint: the carrier'"'"'s calls arrive through the SIP proxy\n[%s-via-proxy](carrier-identify)\nendpoint = %s\nmatch = %s\n' \
        "$trunk_endpoint" "$trunk_endpoint" "$trunk_proxy" >>"$ETC/pjsip-carrier.conf"
    if grep -q '(carrier-registration)' "$ETC/pjsip-carrier.conf"; then
        echo "hotline-asterisk: warning: pjsip-carrier.conf registers with the carrier; behind the proxy the carrier should send 12345 to the proxy, not to a node's registration" >&2
    fi
fi

# -- 3. generated files -------------------------------------------------------------------------
tmp="$ETC/hotline-secrets/.ami-gateway.conf.$$"
printf '; written by the container entrypoint from HOTLINE_AMI_SECRET\nsecret = %s\n' "$secret" >"$tmp"
chmod 0640 "$tmp"
mv "$tmp" "$ETC/hotline-secrets/ami-gateway.conf"

if [ ! -e "$SITE_DIR/hotline-globals.conf" ]; then
    printf '; written by the container entrypoint\nHOTLINE_AGI = %s\nHOTLINE_AGI_BACKUP = %s\nHOTLINE_MISSED_REDIS = %s\n' \
        "$agi_url" "$agi_backup" "$redis_url" >"$ETC/hotline-globals.conf"
fi

# -- 4. ownership (only as root, only if the asterisk user exists) --------------------------------
if [ "$(id -u)" = 0 ] && id "$AST_USER" >/dev/null 2>&1; then
    chown -R "root:$AST_USER" "$ETC"
    find "$ETC" -type d -exec chmod 0750 {} +
    find "$ETC" -type f -exec chmod 0640 {} +
    for dir in /var/run/asterisk /var/lib/asterisk /var/spool/asterisk \
        /var/spool/asterisk/hotline /var/spool/asterisk/hotline/messages "$LOG_DIR"; do
        mkdir -p "$dir"
        chown "$AST_USER:$AST_USER" "$dir"
    done
    chgrp "$LOG_GID" "$LOG_DIR"
    chmod 2750 "$LOG_DIR"
fi

echo "hotline-asterisk: configuration installed into $ETC" >&2
exec "$@"
