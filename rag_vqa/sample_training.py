"""How the sample retriever shipped in ``rag_vqa/data/sample_retriever`` is made, and how good
it is. Run ``python -m rag_vqa.sample_training`` to make it again (about 15 minutes on 2
otherwise idle cores).

The recipe (:class:`Recipe`): a small ReT with tiny CLIP-shaped backbones (a BPE tokenizer
learned from the sample's own texts, so an instruction + question fits the 77-token window;
48x48 images) is trained from scratch, backbones included, with the project's trainer
(``rag-vqa train``'s :func:`rag_vqa.training.run_training`) on rendered photos of the 30 flags
(:mod:`rag_vqa.flag_photos`, style TRAINING) paired with questions of the sample's kinds:
questions about the flag's look go to the country's flag passage (``-1``), all others to its
facts passage (``-0``); the other passage of the same country is the hard negative (same image:
only the question tells them apart), other countries come as in-batch negatives. A second
stage trains only the text path, so that the question's words decide between the two.
:func:`evaluate` measures the six sample questions and fresh photos (style FRESH: held-out
seeds, backgrounds, sizes and ranges).

Shipped rather than trained on first use: training takes far longer than a first run may
(minutes, not seconds, on 2 cores), and a shipped model answers the same on every machine.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from retriever import DEFAULT_QUERY_INSTRUCTION, ReTRetriever
from retriever.configuration_ret import ReTConfig, ReTRetrieverConfig
from retriever.fileio import atomic_write_json, replace_folder
from retriever.processing_ret import ReTProcessor, query_text
from retriever.scoring import maxsim
from retriever.sharing import TRAINING_FILE

from .flag_photos import FRESH, TRAINING, PhotoStyle, render_photo
from .kb import PassageStore, import_kb
from .sample_models import SAMPLE_RETRIEVER_DIR, SAMPLE_RETRIEVER_NAME
from .samples import FLAGS, SAMPLE_KB, question_image, sample_passages, sample_questions
from .training import TrainJob, run_training

__all__ = ["FACT_QUESTIONS", "FLAG_QUESTIONS", "TEXT_PATH", "Recipe", "learn_tokenizer",
           "initial_retriever", "write_training_data", "build", "evaluate", "Quality"]

logger = logging.getLogger(__name__)

# questions answered by a country's facts passage (-0) ...
FACT_QUESTIONS = [
    "What is the capital of the country with this flag?",
    "What is the capital of the country that uses this flag?",
    "What is the capital of this country?", "Which city is the capital of this country?",
    "Name the capital city of the country that flies this flag.",
    "What are the official languages of the country that flies this flag?",
    "What is the official language of this country?", "Which language do people speak here?",
    "On which bay does the country with this flag lie?",
    "Which ocean borders the country of this flag?", "On which sea does this country lie?",
    "Is the country of this flag landlocked?", "Which sea or ocean is near this country?",
    "On which continent is the country with this flag?", "Where is this country?",
    "In which part of the world is the country that uses this flag?",
    "What is the largest city of this country?", "Which country uses this flag?",
    "Tell me about the country of this flag.", "What is this country known for?",
]
# ... and by its flag passage (-1)
# questions without a photo, naming the country: they make both towers read the text (with a
# photo alone, the image decides the country and a passage's text is never needed, so the
# facts and the flag passage of a country, which share their image, would score the same)
FACT_TEXT_QUESTIONS = [
    "What is the capital of {}?", "Which languages are spoken in {}?", "Where is {}?",
    "Which sea or ocean borders {}?", "What is the largest city of {}?", "Tell me about {}.",
]
FLAG_TEXT_QUESTIONS = [
    "What does the flag of {} look like?", "What colours are on the flag of {}?",
    "What is the shape of the flag of {}?", "Describe the flag of {}.",
]
FLAG_QUESTIONS = [
    "What is the shape of this flag?", "What shape is this flag?",
    "What colours does this flag have?", "What colors are on this flag?",
    "Describe this flag.", "What does this flag look like?", "What is the name of this flag?",
    "Are the bands of this flag horizontal or vertical?", "How many bands does this flag have?",
    "What is drawn on this flag?", "What kind of cross is on this flag?",
    "What is the design of this flag?",
]


# the parameters of the text path, as fnmatch patterns over parameter names: the shared text
# tower, each encoder's text adapters, text cross-attention, its norm and both text gates
TEXT_PATH = ("*text*",)


@dataclass
class Recipe:
    """Everything that decides the shipped weights (recorded next to them); the defaults are
    the shipped model's. Training runs the project's trainer: the first stage learns the flags
    from photos (towers included); it learns to ignore the question, because the photo alone
    names the country and a country's two passages share their image, so they tie. The
    second stage (``finetune_steps``; 0 skips it) trains only the text path
    (``finetune_train_only``) on half the photo queries plus questions without a photo, the
    sibling passage as hard negative, so the question's words pick the facts or the flag
    passage while the image path keeps what the first stage learned (a second stage over every
    parameter cost up to 0.1 of the fresh-photo accuracy). Shipped: 6/6 sample questions, fresh
    photos 0.875 (first stage alone: 2/6, 0.917)."""

    photos_per_country: int = 96
    finetune_photos_per_country: int = 48   # the second stage's photo queries (the first ones)
    texts_per_country: int = 12             # questions without a photo (second stage only)
    max_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    hard_negatives_per_query: int = 1       # the sibling passage (same image, other text)
    temperature: float = 1.0                # MaxSim sums span ~[-8, 8]
    finetune_steps: int = 1500
    finetune_learning_rate: float = 1e-3
    finetune_temperature: float = 1.0
    finetune_train_only: tuple[str, ...] = TEXT_PATH
    seed: int = 0
    vocab_size: int = 1000
    text_hidden: int = 48
    vision_hidden: int = 64
    layers: int = 4
    image_size: int = 48
    patch_size: int = 8
    num_queries: int = 8


def _corpus() -> list[str]:
    with PassageStore.open(_kb_source()) as store:
        texts = [p.text for p in store.get_many(store.ids())]
    named = [t.format(p.title) for t in FACT_TEXT_QUESTIONS + FLAG_TEXT_QUESTIONS
             for p in sample_passages()[::2]]
    questions = FACT_QUESTIONS + FLAG_QUESTIONS + named + [q.question for q in sample_questions()]
    return texts + [query_text(DEFAULT_QUERY_INSTRUCTION, q) for q in questions]


_KB_CACHE: dict[str, Path] = {}


def _kb_source() -> Path:
    """The sample KB imported once per process (the texts the index encodes)."""
    if "kb" not in _KB_CACHE:
        root = tempfile.mkdtemp(prefix="sample-kb-")
        atexit.register(shutil.rmtree, root, True)  # a temporary copy: gone with the process
        folder = Path(root) / "kb"
        import_kb("ret-jsonl", SAMPLE_KB / "passages.jsonl", folder, SAMPLE_KB, progress=False)
        _KB_CACHE["kb"] = folder
    return _KB_CACHE["kb"]


def learn_tokenizer(texts: list[str], vocab_size: int):
    """A CLIP tokenizer (CLIP's normaliser, pre-tokeniser and ``</w>`` BPE) whose merges are
    learned from ``texts``: every byte still encodes, and the sample's words are single tokens
    (the tiny test tokenizer spends one token per character: a question would not fit)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    core = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    core.normalizer = normalizers.Sequence([normalizers.NFC(),
                                            normalizers.Replace(Regex(r"\s+"), " "),
                                            normalizers.Lowercase()])
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    core.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, initial_alphabet=alphabet,
        end_of_word_suffix="</w>", show_progress=False))
    model = json.loads(core.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokens = sorted(alphabet) + [c + "</w>" for c in sorted(alphabet)]
    tokens += [t for t in sorted(model["vocab"], key=model["vocab"].get) if t not in set(tokens)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    tokenizer.model_max_length = 77
    return tokenizer


def initial_retriever(recipe: Recipe) -> ReTRetriever:
    """The untrained model: tiny CLIP towers (trainable: ``is_*_frozen`` false) and ReT heads."""
    from transformers import CLIPImageProcessorPil, CLIPTextConfig, CLIPVisionConfig

    tokenizer = learn_tokenizer(_corpus(), recipe.vocab_size)
    vocab = len(tokenizer)
    text = CLIPTextConfig(vocab_size=vocab, hidden_size=recipe.text_hidden,
                          intermediate_size=2 * recipe.text_hidden,
                          num_hidden_layers=recipe.layers,
                          num_attention_heads=max(1, recipe.text_hidden // 16),
                          max_position_embeddings=77, bos_token_id=vocab - 2,
                          eos_token_id=vocab - 1, pad_token_id=vocab - 1,
                          projection_dim=recipe.text_hidden)
    vision = CLIPVisionConfig(hidden_size=recipe.vision_hidden,
                              intermediate_size=2 * recipe.vision_hidden,
                              num_hidden_layers=recipe.layers,
                              num_attention_heads=max(1, recipe.vision_hidden // 16),
                              image_size=recipe.image_size, patch_size=recipe.patch_size,
                              projection_dim=recipe.vision_hidden)
    text._name_or_path = vision._name_or_path = SAMPLE_RETRIEVER_NAME
    layers = list(range(recipe.layers))

    def tower() -> ReTConfig:
        return ReTConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                         is_text_frozen=False, is_vision_frozen=False,
                         layer_strategy={"text": layers, "vision": layers}, hidden_size=64,
                         num_queries=recipe.num_queries)

    config = ReTRetrieverConfig(query_config=tower(), passage_config=tower(),
                                name_or_path=SAMPLE_RETRIEVER_NAME)
    size = recipe.image_size  # the whole photo, squeezed: a centre crop would cut flags off
    images = CLIPImageProcessorPil(size={"height": size, "width": size}, do_center_crop=False,
                                   crop_size={"height": size, "width": size})
    torch.manual_seed(recipe.seed)
    return ReTRetriever(config, processor=ReTProcessor(tokenizer, images)).eval()


def _query(data_id: str, question: str, passage: str, sibling: str,
           image: str | None = None) -> str:
    row = {"data_id": data_id, "instruction": DEFAULT_QUERY_INSTRUCTION, "question": question,
           "passage_id": [passage], "hard_negatives": [sibling]}
    return json.dumps({**row, "image_path": image} if image else row)


def write_training_data(folder: Path, recipe: Recipe) -> tuple[Path, Path]:
    """Rendered photos under ``folder/photos`` and ReT JSONL queries: two per photo (a facts
    question and a flag question) for the first stage, the same plus questions without a photo
    for the second; returns both files."""
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(recipe.seed)
    photo_lines, finetune_lines = [], []
    work = [(c, i) for c in FLAGS for i in range(recipe.photos_per_country)]
    for country, i in tqdm(work, desc="rendering training photos", unit="photo"):
        name = f"photos/{country}-{i:03d}.jpg"
        render_photo(country, i, TRAINING).save(folder / name, quality=95)
        for kind, questions in (("0", FACT_QUESTIONS), ("1", FLAG_QUESTIONS)):
            other = "1" if kind == "0" else "0"
            line = _query(f"{country}-{i:03d}-{kind}", rng.choice(questions),
                          f"{country}-{kind}", f"{country}-{other}", name)
            photo_lines.append(line)
            if i < recipe.finetune_photos_per_country:
                finetune_lines.append(line)
    with PassageStore.open(_kb_source()) as store:
        names = {c: store.get(f"{c}-0").title for c in FLAGS}
    text_lines = []
    for country in FLAGS:
        for i in range(recipe.texts_per_country):
            kind, other = ("0", "1") if i % 2 == 0 else ("1", "0")
            template = rng.choice(FACT_TEXT_QUESTIONS if kind == "0" else FLAG_TEXT_QUESTIONS)
            text_lines.append(_query(f"{country}-text-{i:03d}", template.format(names[country]),
                                     f"{country}-{kind}", f"{country}-{other}"))
    photos, everything = folder / "photos.jsonl", folder / "all.jsonl"
    photos.write_text("\n".join(photo_lines) + "\n", encoding="utf-8")
    everything.write_text("\n".join(finetune_lines + text_lines) + "\n", encoding="utf-8")
    return photos, everything


def _train(work: Path, queries: Path, start: Path, name: str, steps: int, learning_rate: float,
           temperature: float, recipe: Recipe, train_only: tuple[str, ...] = ()):
    job = TrainJob(queries=str(queries), passages=str(_kb_source()), retriever=str(start),
                   images=str(work), train={
                       "output_dir": str(work / name), "max_steps": steps,
                       "batch_size": recipe.batch_size, "learning_rate": learning_rate,
                       "warmup_steps": min(recipe.warmup_steps, max(1, steps // 10)),
                       "seed": recipe.seed,
                       "hard_negatives_per_query": recipe.hard_negatives_per_query,
                       "temperature": temperature, "learn_temperature": True,
                       "log_every": 50, "train_only": list(train_only)})
    return run_training(job)


def build(out: Path = SAMPLE_RETRIEVER_DIR, recipe: Recipe | None = None,
          work: Path | None = None) -> Path:
    """Render, train with the project's trainer, and write the model (released layout) to
    ``out``; its ``training.json`` (the trainer's record) gains the recipe and the quality."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="sample-retriever-") as tmp:
            return build(out, recipe, Path(tmp))
    recipe = recipe or Recipe()
    start = time.perf_counter()
    photos, everything = write_training_data(work, recipe)
    initial_retriever(recipe).save_pretrained(work / "initial")
    first, model = _train(work, photos, work / "initial", "stage1", recipe.max_steps,
                          recipe.learning_rate, recipe.temperature, recipe)
    result, final = first, model
    if recipe.finetune_steps:
        result, final = _train(work, everything, model, "stage2", recipe.finetune_steps,
                               recipe.finetune_learning_rate, recipe.finetune_temperature,
                               recipe, recipe.finetune_train_only)
    quality = evaluate(final)
    logger.info("trained %d + %d steps in %.0f s: %s", first.steps, result.steps,
                time.perf_counter() - start, quality)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(final, tmp)
    record = json.loads((tmp / TRAINING_FILE).read_text())
    atomic_write_json(tmp / TRAINING_FILE, {
        "name": SAMPLE_RETRIEVER_NAME, "made_by": "python -m rag_vqa.sample_training",
        "recipe": asdict(recipe), "quality": asdict(quality),
        "total_seconds": round(time.perf_counter() - start, 1), **record})
    return replace_folder(tmp, out)


@dataclass
class Quality:
    sample_top1: int          # of the six sample questions, right passage first
    sample_total: int
    fresh_top1: float         # fresh photos with the right country's article first
    fresh_total: int
    fresh_wrong: list[str]    # "country -> predicted" for the misses
    fresh_passage_top1: float = 0.0  # ... and the right passage of the two (the question decides)


def evaluate(model_dir: str | Path, fresh_per_country: int = 4,
             style: PhotoStyle = FRESH) -> Quality:
    """The six sample questions (passage-level top-1) and fresh photos of every flag with
    questions of both kinds (article-level top-1), against all 60 sample passages."""
    model = ReTRetriever.from_pretrained(model_dir)
    with PassageStore.open(_kb_source()) as store:
        passages = store.get_many(store.ids())
        images = [store.resolve_image(p) for p in passages]
    docs = model.encode_documents([p.text for p in passages], images, show_progress=False)
    ids = [p.passage_id for p in passages]
    samples = sample_questions()
    found = _top1(model, docs, [q.question for q in samples],
                  [question_image(q) for q in samples])
    sample_hits = sum(ids[i] in q.passage_id for i, q in zip(found, samples))
    rng = random.Random(1234)
    fresh = [(c, render_photo(c, i, style), rng.choice(FACT_QUESTIONS + FLAG_QUESTIONS))
             for c in FLAGS for i in range(fresh_per_country)]
    found = _top1(model, docs, [q for _, _, q in fresh], [p for _, p, _ in fresh])
    wrong = [f"{c} -> {ids[i].rsplit('-', 1)[0]}" for (c, _, _), i in zip(fresh, found)
             if ids[i].rsplit("-", 1)[0] != c]
    right = sum(ids[i] == f"{c}-{0 if q in FACT_QUESTIONS else 1}"
                for (c, _, q), i in zip(fresh, found))
    return Quality(sample_hits, len(samples), round(1 - len(wrong) / len(fresh), 4), len(fresh),
                   wrong, round(right / len(fresh), 4))


def _top1(model: ReTRetriever, docs: torch.Tensor, questions: list[str],
          images: list[Any]) -> list[int]:
    queries = model.encode_queries(questions, images, instruction=DEFAULT_QUERY_INSTRUCTION,
                                   show_progress=False)
    return maxsim(queries, docs).argmax(dim=1).tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_RETRIEVER_DIR)
    parser.add_argument("--steps", type=int, default=Recipe.max_steps)
    parser.add_argument("--finetune-steps", type=int, default=Recipe.finetune_steps)
    parser.add_argument("--photos-per-country", type=int, default=Recipe.photos_per_country)
    parser.add_argument("--evaluate", action="store_true",
                        help="only measure the model in --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.evaluate:
        print(json.dumps(asdict(evaluate(args.out)), indent=2))
        return 0
    recipe = Recipe(max_steps=args.steps, finetune_steps=args.finetune_steps,
                    photos_per_country=args.photos_per_country)
    out = build(args.out, recipe)
    print((out / "training.json").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
