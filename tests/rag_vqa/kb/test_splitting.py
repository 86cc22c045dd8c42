import math
import re

import pytest

from rag_vqa.kb.splitting import HeuristicCounter, PassageSplitter

from .kbdata import sentence_text


def reference_count(text: str) -> int:
    """The heuristic's rule, computed independently: digits and punctuation one token each, an
    ASCII letter run ceil(len/6), other letters one per character."""
    total = 0
    for piece in re.findall(r"[A-Za-z]+|[^\sA-Za-z]", text):
        total += math.ceil(len(piece) / 6) if piece[0].isascii() and piece[0].isalpha() else 1
    return total


@pytest.mark.parametrize("text", ["Eiffel 1889!", "encyclopedic", "Zürich (CH), 42 km.",
                                  "a_b ... --", "中文字", sentence_text(3, 200), ""])
def test_heuristic_counts_follow_the_rule(text):
    counter = HeuristicCounter()
    assert counter.count(text) == reference_count(text) == len(counter.spans(text))
    for start, end in counter.spans(text):
        assert text[start:end].strip() == text[start:end] != ""


def rebuild(text, chunks):
    """Concatenate chunks minus their overlaps, keeping the whitespace between them."""
    out, position = "", chunks[0].start
    for chunk in chunks:
        if chunk.start > position:
            gap = text[position:chunk.start]
            assert not gap.strip(), f"text between chunks was lost: {gap!r}"
            out += gap
        out += text[max(position, chunk.start):chunk.end]
        position = max(position, chunk.end)
    return out


def check_chunks(splitter, text, prefix, chunks):
    count = splitter.counter.count
    spans = splitter.counter.spans(text)
    starts, ends = {a for a, _ in spans}, {b for _, b in spans}
    for chunk in chunks:
        assert count(prefix + chunk.text) <= splitter.max_tokens
        assert chunk.text == text[chunk.start:chunk.end] == chunk.text.strip() != ""
        assert chunk.start in starts and chunk.end in ends  # never inside a token
    assert rebuild(text, chunks) == text.strip()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_tokens,overlap", [(75, 16), (40, 8), (20, 0)])
def test_chunks_fit_cover_and_overlap(seed, max_tokens, overlap):
    splitter = PassageSplitter(max_tokens=max_tokens, overlap=overlap)
    text = sentence_text(seed, 400)  # one long paragraph: every cut is a windowed cut
    prefix = splitter.make_prefix("Eiffel Tower", "History")
    chunks = splitter.split_text(text, prefix)
    check_chunks(splitter, text, prefix, chunks)
    assert len(chunks) > 3
    budget = max_tokens - splitter.counter.count(prefix)
    for before, after in zip(chunks, chunks[1:]):
        shared = before.token_end - after.token_start
        assert overlap <= shared <= 2 * overlap
        assert before.token_end - before.token_start <= budget
        # cuts fall between words
        assert not (text[after.start - 1].isalnum() and text[after.start].isalnum())
        assert not (text[before.end - 1].isalnum() and text[before.end].isalnum())


@pytest.mark.parametrize("seed", range(3))
def test_chunks_fit_a_real_clip_tokenizer(seed):
    from retriever.tiny import tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()  # real CLIP BPE, tiny vocabulary: ~1 token per letter
    splitter = PassageSplitter(max_tokens=75, overlap=16, tokenizer=tokenizer)
    text = sentence_text(seed, 120, paragraph_every=40)
    prefix = splitter.make_prefix("Eiffel Tower", None)
    chunks = splitter.split_text(text, prefix)
    check_chunks(splitter, text, prefix, chunks)
    for chunk in chunks:  # what the retriever's processor sees: BOS + text + EOS <= 77
        assert len(tokenizer(prefix + chunk.text)["input_ids"]) <= 77


def test_small_paragraphs_are_merged_and_cut_at_paragraph_ends():
    splitter = PassageSplitter(max_tokens=30, overlap=4)
    paragraphs = [sentence_text(i, 5) for i in range(12)]
    text = "\n\n".join(paragraphs)
    chunks = splitter.split_text(text)
    check_chunks(splitter, text, "", chunks)
    assert 1 < len(chunks) < len(paragraphs)
    for before, after in zip(chunks, chunks[1:]):
        assert before.token_end == after.token_start  # no overlap at a paragraph cut
        assert "\n" in text[before.end:after.start]
    for paragraph in paragraphs:  # each paragraph lies whole in one chunk
        assert any(paragraph in chunk.text for chunk in chunks)


def test_a_word_longer_than_the_budget_is_still_split_within_it():
    splitter = PassageSplitter(max_tokens=10, overlap=2)
    text = "x" * 200
    chunks = splitter.split_text(text)
    check_chunks(splitter, text, "", chunks)


def test_passages_carry_prefix_fields_and_deterministic_ids():
    splitter = PassageSplitter(max_tokens=40, overlap=8)
    text = sentence_text(1, 150)
    make = lambda: splitter.split_section(text, article_id="Q42", section_index=3,  # noqa: E731
                                          title="Douglas Adams", section="Career",
                                          url="https://w/x", language="en")
    passages = make()
    assert passages == make()
    assert [p.passage_id for p in passages] == [f"Q42#3-{i}" for i in range(len(passages))]
    chunks = splitter.split_text(text, "Douglas Adams - Career: ")
    for passage, chunk in zip(passages, chunks, strict=True):
        assert passage.text == "Douglas Adams - Career: " + chunk.text
        assert (passage.title, passage.section, passage.article_id, passage.url,
                passage.language) == ("Douglas Adams", "Career", "Q42", "https://w/x", "en")


def test_prefix_variants():
    splitter = PassageSplitter()
    assert splitter.make_prefix("T", "S") == "T - S: "
    assert splitter.make_prefix("T", None) == splitter.make_prefix("T", " ") == "T: "
    assert splitter.make_prefix(None, None) == ""
    off = PassageSplitter(context_prefix=False)
    assert off.make_prefix("T", "S") == ""
    assert off.split_section("Some text.", article_id="a", section_index=0, title="T")[0].text \
        == "Some text."
    long_title = " ".join(["Wordy"] * 200)
    prefix = splitter.make_prefix(long_title, "Section")
    assert prefix.endswith(": ") and long_title.startswith(prefix[:-2])
    assert splitter.counter.count(prefix) <= splitter.max_tokens // 2
    assert splitter.context_passage(article_id="a", section_index=2, title="T", section="S").text \
        == "T - S"


def test_empty_text_gives_no_chunks():
    assert PassageSplitter().split_text("  \n\n ") == []


@pytest.mark.parametrize("kwargs", [{"max_tokens": 4}, {"overlap": 40}, {"overlap": -1}])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        PassageSplitter(**kwargs)


def test_slow_tokenizers_are_refused():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast tokenizer"):
        PassageSplitter(tokenizer=Slow())


def test_config_names_the_counter():
    from retriever.tiny import tiny_clip_tokenizer

    assert PassageSplitter().config() == {"max_tokens": 75, "overlap": 16,
                                          "tokenizer": "heuristic", "context_prefix": True}
    assert PassageSplitter(tokenizer=tiny_clip_tokenizer()).config()["tokenizer"] != "heuristic"
