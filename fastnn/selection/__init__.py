"""Model selection, the lecture's last step: many candidates trained with early stopping, the
best picked on the validation set, the test set scored once (`fastnn.search`).

Layout: `space` (grid values and scipy.stats draws), `candidate` (one resumable fit),
`journal` (the search directory: journal and checkpoints), `executors` (this thread, threads,
Dask), `driver` (search, SearchResult).
"""
from .driver import SearchResult, SearchTable, search

__all__ = ["SearchResult", "SearchTable", "search"]
