"""``evaluate`` metric module for era_hf's retrieval metrics.

A thin wrapper around :func:`era_hf.metrics.retrieval_metrics` so that the
numbers are identical to the library's.  Load it by local path (no Hub access
needed, works with ``HF_HUB_OFFLINE=1``)::

    import evaluate
    from era_hf.metrics import METRIC_MODULE_PATH

    era = evaluate.load(METRIC_MODULE_PATH)
    era.compute(
        predictions=[["d1", "d2", "d3"]],                         # ranked doc ids, best first
        references=[{"query_id": "q1", "doc_ids": ["d2", "d7"], "scores": [2, 1]}],  # graded qrels
    )
"""

import datasets
import evaluate

from era_hf.metrics import DEFAULT_KS, mean_metrics, metric_names, retrieval_metrics

_CITATION = """\
@inproceedings{jarvelin2002cumulated,
  title={Cumulated gain-based evaluation of IR techniques},
  author={J{\\"a}rvelin, Kalervo and Kek{\\"a}l{\\"a}inen, Jaana},
  journal={ACM Transactions on Information Systems},
  volume={20}, number={4}, pages={422--446}, year={2002}
}
"""

_DESCRIPTION = """\
Ranked-retrieval metrics averaged over queries: nDCG@k with linear graded gains
(discount 1/log2(rank+1), ideal DCG from the query's judged scores), Recall@k
(relevant = qrel score > 0), MRR@100 and MAP@100 (trec_eval map_cut.100).
They agree with trec_eval / pytrec_eval (ndcg_cut, recall, recip_rank, map_cut).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: one list of retrieved doc ids per query, in rank order (best first).
    references: one dict per query, holding its judgements:
        ``{"query_id": str, "doc_ids": list[str], "scores": list[int]}``
        (parallel lists; a score > 0 means relevant and is the nDCG gain).
        Every query needs at least one score > 0.
    ks: cut-offs for ndcg@k and recall@k (default (1, 5, 10, 20, 100)).
Returns:
    dict metric name -> mean over queries: ndcg@k, recall@k for each k, mrr@100, map@100.
Examples:
    >>> era = evaluate.load(METRIC_MODULE_PATH)  # doctest: +SKIP
    >>> era.compute(
    ...     predictions=[["a", "b"]],
    ...     references=[{"query_id": "q", "doc_ids": ["b"], "scores": [1]}],
    ...     ks=(1, 5),
    ... )  # doctest: +SKIP
    {'ndcg@1': 0.0, 'ndcg@5': 0.6309..., 'recall@1': 0.0, 'recall@5': 1.0, 'mrr@100': 0.5, 'map@100': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EraRetrieval(evaluate.Metric):
    """nDCG@k / Recall@k / MRR@100 / MAP@100 over ranked doc-id lists with graded qrels."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    # The query id travels with its judgements so that the
                    # standard two-argument compute() call is enough, and
                    # errors can name the offending query.
                    "references": {
                        "query_id": datasets.Value("string"),
                        "doc_ids": datasets.Sequence(datasets.Value("string")),
                        "scores": datasets.Sequence(datasets.Value("int64")),
                    },
                }
            ),
            reference_urls=["https://github.com/usnistgov/trec_eval"],
        )

    def _compute(self, predictions, references, ks=DEFAULT_KS):
        query_ids = []
        qrels = {}
        for position, ref in enumerate(references):
            qid = ref["query_id"]
            if len(ref["doc_ids"]) != len(ref["scores"]):
                raise ValueError(
                    f"references[{position}] (query {qid!r}): doc_ids and scores must have the same length"
                )
            if qid in qrels:
                raise ValueError(f"query {qid!r} appears more than once in references")
            query_ids.append(qid)
            qrels[qid] = dict(zip(ref["doc_ids"], (int(s) for s in ref["scores"])))
        per_query = retrieval_metrics(query_ids, [list(p) for p in predictions], qrels, ks=ks)
        means = mean_metrics(per_query)
        return {name: means[name] for name in metric_names(ks)}
