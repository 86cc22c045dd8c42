"""Answer generation: multimodal LLMs conditioned on retrieved passages (arrives with issue 4)."""
