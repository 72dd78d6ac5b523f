"""Property-based tests (hypothesis) of the text → embedding → search path."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from era_hf.index import DocumentIndex

texts = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)
                 .filter(lambda t: t.strip()), min_size=1, max_size=6, unique_by=lambda t: t.strip().lower())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=texts, k=st.integers(min_value=1, max_value=8))
def test_any_text_embeds_to_unit_vectors_and_search_is_consistent(minilm_encoder, docs, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = minilm_encoder.encode(docs)
    assert emb.shape == (len(docs), 384) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    ids = [f"d{i}" for i in range(len(docs))]
    index = DocumentIndex.from_embeddings(emb, ids, docs, encoder_info={"document_encoder": "minilm"})
    scores, found = index.search(emb, k)
    for row, (s, f) in enumerate(zip(scores, found)):
        assert len(f) == min(k, len(docs)) and set(f) <= set(ids) and len(set(f)) == len(f)
        assert np.all(np.diff(s) <= 1e-5)  # best first
        assert s[0] >= float(emb[row] @ emb[row]) - 1e-4  # nothing beats a document's own vector
