"""Batch evaluation: question sets (InfoSeek, Encyclopedic-VQA, ReT JSONL), the official scorers
(``eval.metrics``), resumable runs of the pipeline and reports.

    rag-vqa eval score infoseek --predictions P.jsonl --references infoseek_val.jsonl \\
        --qtypes infoseek_val_qtype.jsonl
    rag-vqa eval run --dataset evqa --questions test.csv --images IMAGES --index INDEX --out RUN
"""
