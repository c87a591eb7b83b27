"""Benchmark of image-syncer against skopeo sync (`python bench/run.py`)."""
