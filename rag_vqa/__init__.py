"""rag-vqa: retrieval-augmented visual question answering built around ReT.

The pipeline API (``RagVQA``) arrives with the pipeline issue; today this package holds the
command line (``rag-vqa``), retriever loading by name and the built-in sample.
"""

__version__ = "0.1.0"
