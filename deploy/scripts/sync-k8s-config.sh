#!/usr/bin/env bash
# Copy the repository's leadflow.example.yaml into the Kubernetes base, where kustomize
# can read it (it loads no file from outside the kustomization's folder).
# tests/deploy fails when the two differ.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cp "$root/leadflow.example.yaml" "$root/deploy/k8s/base/leadflow.example.yaml"
