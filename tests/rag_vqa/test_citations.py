import pytest

from rag_vqa.citations import parse_citations

SHOWN = ["japan-0", "japan-1", "peru-0"]


@pytest.mark.parametrize("text, answer, ids, invalid", [
    ("Tokyo [1]", "Tokyo", ["japan-0"], []),
    ("Tokyo [1].", "Tokyo.", ["japan-0"], []),
    ("Tokyo [2][1]", "Tokyo", ["japan-1", "japan-0"], []),
    ("Tokyo [1, 3] and Lima [3]", "Tokyo and Lima", ["japan-0", "peru-0"], []),
    ("Tokyo [1-3]", "Tokyo", SHOWN, []),
    ("Tokyo [1\u20132]", "Tokyo", ["japan-0", "japan-1"], []),
    ("Tokyo [4] [1]", "Tokyo", ["japan-0"], [4]),
    ("Tokyo [0]", "Tokyo", [], [0]),
    ("Tokyo", "Tokyo", [], []),
    ("1921 [ 2 ]", "1921", ["japan-1"], []),
    ("array[3-1] and [1-2000]", "array[3-1] and [1-2000]", [], []),   # not citations
])
def test_markers_map_to_the_shown_passages_and_leave_the_answer(text, answer, ids, invalid):
    got = parse_citations(text, SHOWN)
    assert (got.answer, got.passage_ids, got.invalid) == (answer, ids, invalid)
    assert [SHOWN[n - 1] for n in got.numbers] == got.passage_ids


def test_the_official_scorer_sees_the_uncited_answer():
    from eval.metrics.evqa import single_answer_em

    assert not single_answer_em("Tokyo", "Tokyo [1].")      # why the markers must go
    assert single_answer_em("Tokyo", parse_citations("Tokyo [1].", SHOWN).answer)


def test_unnumbered_prompt_slots_and_bad_input():
    assert parse_citations("x [1] [2]", [None, "b"]).passage_ids == ["b"]
    with pytest.raises(ValueError, match="must be text"):
        parse_citations(None, SHOWN)


def test_cite_setting_asks_the_generator_to_cite():
    from generator.prompts import PromptConfig
    from rag_vqa.config import load_config

    config = load_config(None, answer={"cite": True})
    assert config.generator.prompt.cite       # the prompt's own cite_instruction is added
    assert config.generator.prompt.instruction == PromptConfig().instruction
    assert not load_config(None).generator.prompt.cite
    # the prompt's switch alone also reads the citations back, so the markers never get scored
    either = load_config(None, generator={"prompt": {"cite": True, "cite_instruction": "[n]!"}})
    assert either.answer.cite and either.generator.prompt.cite_instruction == "[n]!"
