#!/usr/bin/env bash
# The Debian packages some tests use as real components: PostgreSQL (monitor storage),
# Chromium (the monitors page), HAProxy and Prometheus (the replicas test, tests/docker; and
# promtool, which checks the alert rules). Installed when missing and apt-get is there;
# otherwise those tests skip, saying why.
set -uo pipefail
missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || command -v initdb >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1 \
        && exit 0
fi
echo "could not install ${missing[*]} (needs root and apt-get): their tests will skip" >&2
