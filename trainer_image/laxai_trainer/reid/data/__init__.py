"""Input pipeline: decoded-crop cache, batches and augmentations on the training device."""
