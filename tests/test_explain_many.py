"""ExplanationService.explain_many: many clips in one call, cache first, exact MTRN
misses batched, the same explanations as explain() clip by clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.analysis.batch import BatchJob, clip_rows, explain_chunk
from core.errors import UserError
from core.explain import ExplanationService
from core.models.multiscale import multiscale_logits
from tolerances import esv_reordering_tolerance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ws(demo_small):
    return demo_small


@pytest.fixture(scope="module")
def ids(ws) -> list[str]:
    return [str(c) for c in ws.clips("val").index[:5]]


def test_same_explanations_as_one_by_one_in_order(ws, ids):
    service = ExplanationService(ws, disk=False)
    many = service.explain_many(ids, task="noun", n_frames=5, target="predicted")
    assert [ex.clip_id for ex in many] == ids and not any(ex.cached for ex in many)
    one_by_one = ExplanationService(ws, disk=False)
    for ex in many:
        single = one_by_one.explain(ex.clip_id, task="noun", n_frames=5, target="predicted")
        rows = ex.frame_indices // ws.feature_stride  # one pass for all clips vs one clip: float32 heads, other orders
        with torch.no_grad():
            x = torch.from_numpy(ws.features(ex.clip_id, rows))
            delta = esv_reordering_tolerance(x, multiscale_logits(ws.heads("noun").model("mtrn"), x[None]))
        torch.testing.assert_close(ex.esv_result.esvs, single.esv_result.esvs, atol=delta, rtol=0)
        assert ex.explained_class == single.explained_class and ex.label == single.label
        assert [c for c, _, _ in ex.top5] == [c for c, _, _ in single.top5]
        np.testing.assert_allclose([p for _, _, p in ex.top5], [p for _, _, p in single.top5], rtol=0, atol=delta / 2)
        np.testing.assert_array_equal(ex.frame_indices, single.frame_indices)
        assert ex.exact and ex.esv_result.n_head_evaluations == single.esv_result.n_head_evaluations
    # Now cached: explain() and explain_many() read the stored results.
    assert service.explain(ids[1], task="noun", n_frames=5).cached
    again = service.explain_many(list(reversed(ids)), task="noun", n_frames=5)
    assert all(ex.cached for ex in again) and again[-1].esv_result is many[0].esv_result


def test_partly_cached_and_cache_false(ws, ids):
    service = ExplanationService(ws, disk=False)
    first = service.explain(ids[2], task="verb", n_frames=3)
    mixed = service.explain_many(ids, task="verb", n_frames=3, cache=False)
    assert [ex.cached for ex in mixed] == [False, False, True, False, False]
    assert mixed[2].esv_result is first.esv_result
    assert not service.explain(ids[0], task="verb", n_frames=3).cached  # cache=False stored nothing


def test_other_settings_go_clip_by_clip(ws, ids):
    service = ExplanationService(ws, disk=False)
    seen: list[float] = []
    many = service.explain_many(ids[:2], task="verb", n_frames=4, model="tsn", samples_per_scale=3, seed=1,
                                progress=lambda f, m: seen.append(f))
    for ex in many:
        assert torch.equal(ex.esv_result.esvs, service.explain(ex.clip_id, task="verb", n_frames=4, model="tsn",
                                                               samples_per_scale=3, seed=1).esv_result.esvs)
    assert not seen or max(seen) <= 1.0
    with pytest.raises(UserError, match="Unknown model"):
        service.explain_many(ids, model="nope")
    with pytest.raises(UserError, match="not in dataset"):
        service.explain_many(["no-such-clip"])
    assert service.explain_many([]) == []


def test_batch_rows_from_the_chunk_equal_rows_clip_by_clip(ws, ids):
    job = BatchJob(tasks=("verb",), models=("mtrn",), n_frames=(2, 4))
    chunk = ws.clips("val").loc[ids[:3]]
    service = ExplanationService(ws, disk=False)
    explained = explain_chunk(ws, service, chunk, job)
    for clip_id, clip in chunk.iterrows():
        batched = clip_rows(ws, service, clip, job, explained[str(clip_id)])
        alone = clip_rows(ws, ExplanationService(ws, disk=False), clip, job)
        assert len(batched) == len(alone)
        for a, b in zip(batched, alone):
            assert a.keys() == b.keys()
            for key in a:
                if isinstance(a[key], float):
                    assert a[key] == pytest.approx(b[key], abs=1e-6), key
                else:
                    assert a[key] == b[key], key
