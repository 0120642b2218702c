"""Losses of the embedding: triplet (batch-hard, random triplets) and identity."""
