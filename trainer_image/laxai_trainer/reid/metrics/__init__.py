"""Validation: retrieval metrics (rank-k, mAP) and val losses."""
