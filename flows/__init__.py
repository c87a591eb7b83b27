"""Prefect orchestration of the `syncer_core` engine: flows, tasks and the CLI."""
