"""`UploadPlan`: which upload mode and chunk size to try after a registry refused a body."""

from __future__ import annotations

from syncer_core.registry.negotiation import FALLBACK_CHUNK, MIN_CHUNK, UploadPlan

MiB = 1024 * 1024


def test_a_refused_monolithic_upload_falls_back_to_chunks_and_is_remembered() -> None:
    plan = UploadPlan()
    assert plan.refused(413, 0) == FALLBACK_CHUNK
    assert plan.chunk_size == FALLBACK_CHUNK
    assert plan.refused(405, 0) == FALLBACK_CHUNK  # a concurrent upload learns the same


def test_the_configured_chunk_size_is_the_fallback_and_min_length_raises_it() -> None:
    plan = UploadPlan(2 * MiB)
    plan.announce_min_chunk("3145728")
    assert plan.chunk_size == 3 * MiB
    assert plan.refused(413, 0) == 3 * MiB


def test_refused_patches_halve_down_to_the_floor_then_give_up() -> None:
    plan = UploadPlan(MiB)
    assert plan.refused(416, MiB) == MiB // 2
    assert plan.refused(416, MiB // 2) == MIN_CHUNK
    assert plan.refused(416, MIN_CHUNK) is None


def test_statuses_that_are_not_about_size_are_not_negotiated() -> None:
    plan = UploadPlan()
    assert plan.refused(400, 0) is None
    assert plan.refused(403, 0) is None
    assert plan.refused(405, 4 * MiB) is None
    assert plan.chunk_size == 0
    assert plan.fallbacks == []


def test_a_min_length_stops_the_halving() -> None:
    plan = UploadPlan(8 * MiB)
    plan.announce_min_chunk("5242880")  # ECR: parts of at least 5 MB
    assert plan.refused(413, 8 * MiB) == 5 * MiB
    assert plan.refused(413, 5 * MiB) is None
