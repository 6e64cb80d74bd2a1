#!/bin/sh
# Gateway container entrypoint: refuse to start the gateway without an AMI secret
# (HOTLINE_AMI_SECRET, or HOTLINE_AMI_SECRET_FILE naming a readable file), then exec
# the command. Other commands of the image (e.g. the ASR worker) need no AMI secret.
set -eu

fail() {
    echo "hotline-entrypoint: $*" >&2
    exit 64
}

if [ "$#" -eq 0 ]; then
    set -- hotline-gateway run
fi

if [ "$1" = "hotline-gateway" ] && [ "${2:-}" = "run" ]; then
    if [ -n "${HOTLINE_AMI_SECRET_FILE:-}" ]; then
        [ -r "$HOTLINE_AMI_SECRET_FILE" ] || fail "cannot read HOTLINE_AMI_SECRET_FILE=$HOTLINE_AMI_SECRET_FILE"
    elif [ -z "${HOTLINE_AMI_SECRET:-}" ]; then
        fail "HOTLINE_AMI_SECRET (or HOTLINE_AMI_SECRET_FILE) is not set; refusing to start without the AMI secret"
    fi
fi

exec "$@"
