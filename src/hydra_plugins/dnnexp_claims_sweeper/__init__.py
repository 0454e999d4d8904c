"""``hydra/sweeper=claims``: dnnexp's sweeper that adds seeds until every claim is decided (see claims_sweeper.py)."""
