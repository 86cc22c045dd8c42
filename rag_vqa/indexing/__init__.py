"""Building a searchable index from a knowledge base with the ReT document encoder."""

from .build import DEFAULT_SHARD_SIZE, IndexBuildReport, build_index

__all__ = ["DEFAULT_SHARD_SIZE", "IndexBuildReport", "build_index"]
