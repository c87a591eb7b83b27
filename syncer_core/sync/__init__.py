"""The sync engine: planning, blob and image copy, results."""
