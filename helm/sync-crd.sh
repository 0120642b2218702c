#!/usr/bin/env bash
# Copies the generated TrainingJob CRD into the chart (Helm installs crds/ files verbatim).
# Run after regenerating the top-level file:  laxai-operator crd > crds/trainingjob.yaml && helm/sync-crd.sh
# tests/helm/test_crd_copy.py fails while the two differ.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cp "$root/crds/trainingjob.yaml" "$root/helm/laxai-training/crds/trainingjob.yaml"
echo "copied crds/trainingjob.yaml -> helm/laxai-training/crds/trainingjob.yaml"
