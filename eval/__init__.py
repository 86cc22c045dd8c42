"""Batch evaluation: datasets, the official InfoSeek / E-VQA metrics, reports (arrives with
issue 6)."""
