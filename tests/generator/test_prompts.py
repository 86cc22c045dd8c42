"""Prompt building against a word-counting fake tokenizer, so budgets can be checked exactly."""

import pytest

from generator.prompts import (
    BuiltPrompt,
    ContextPassage,
    PromptBuilder,
    PromptConfig,
    PromptTooLongError,
    as_context_passages,
)


class WordOps:
    """One token per whitespace-separated word; the chat template adds two words."""

    def count_tokens(self, text):
        return len(text.split())

    def truncate_tokens(self, text, max_tokens):
        return " ".join(text.split()[:max_tokens])

    def render(self, body, has_image):
        return ("USER: <image> " if has_image else "USER: ") + body + " ASSISTANT:"


def passage(i, words=30):
    return ContextPassage(" ".join(f"w{i}_{j}" for j in range(words)), f"Title{i}", f"p{i}")


def build(limit=400, reserve=0, **prompt):
    return PromptBuilder(PromptConfig(**prompt), WordOps(), context_limit=limit,
                         reserve_tokens=reserve)


def test_passages_appear_numbered_in_rank_order_with_titles():
    built = build().build("When was it built?", [passage(1), passage(2), passage(3)], True)
    text = built.text
    assert (text.index("[1] Title1: w1_0") < text.index("[2] Title2: w2_0")
            < text.index("[3] Title3"))
    assert built.passage_ids == ["p1", "p2", "p3"] and built.dropped == 0
    assert text.rstrip().endswith("Question: When was it built?\nShort answer: ASSISTANT:")
    assert built.num_tokens == WordOps().count_tokens(text)


def test_each_passage_is_cut_to_its_budget():
    built = build(max_passage_tokens=10).build("q?", [passage(1, 50)], False)
    line = next(ln for ln in built.text.splitlines() if ln.startswith("[1]"))
    assert line.split(": ", 1)[1].split() == [f"w1_{j}" for j in range(10)]
    assert built.truncated == [True]


def test_total_budget_truncates_low_ranks_first_and_never_the_question():
    question = "what is the name of this very tall tower in the photo?"
    limit = 120
    built = build(limit=limit, reserve=20).build(question, [passage(i, 40) for i in range(1, 6)],
                                                   True)
    assert built.num_tokens <= limit - 20
    assert question in built.text
    assert built.passage_ids[0] == "p1" and built.dropped >= 2
    assert built.truncated[-1] or len(built.passage_ids) < 5
    # the first passage is whole when the budget allows it
    assert "w1_39" in built.text


def test_question_that_cannot_fit_raises():
    with pytest.raises(PromptTooLongError, match="instruction and question need"):
        build(limit=30).build("word " * 40, [passage(1)], False)


def test_extra_tokens_count_against_the_budget():
    small = build(limit=150).build("q?", [passage(i) for i in range(1, 5)], True,
                                   extra_tokens=60)
    large = build(limit=150).build("q?", [passage(i) for i in range(1, 5)], True)
    assert small.num_tokens <= 150 and len(small.passage_ids) < len(large.passage_ids)


def test_no_retrieval_mode_and_untitled_passages():
    builder = PromptBuilder(PromptConfig(), WordOps(), 400, 0, use_passages=False)
    built = builder.build("q?", [passage(1)], True)
    assert "Passages:" not in built.text and built.passage_ids == []
    assert PromptConfig().no_context_instruction in built.text
    untitled = build().build("q?", [ContextPassage("just text")], False)
    assert "[1] just text" in untitled.text


def test_templates_are_validated_and_overridable():
    with pytest.raises(ValueError, match="question_template"):
        PromptConfig(question_template="Q:")
    with pytest.raises(ValueError, match="passage_template"):
        PromptConfig(passage_template="{title} {oops}")
    with pytest.raises(ValueError, match="unknown prompt option"):
        PromptConfig.from_dict({"instrucion": "typo"})
    custom = build(instruction="Be brief.", question_template="Q: {question}\nA:")
    built = custom.build("why?", [passage(1)], False)
    assert built.text.startswith("USER: Be brief.") and "Q: why?\nA:" in built.text


def test_passage_inputs_are_coerced():
    class KBPassage:
        passage_id, title, text = "k1", "T", "body"

    out = as_context_passages([KBPassage(), {"text": "d", "title": "D", "passage_id": "x"}, "s"])
    assert [p.passage_id for p in out] == ["k1", "x", None]
    assert [p.text for p in out] == ["body", "d", "s"]
    assert isinstance(build().build("q?", out, False), BuiltPrompt)


def test_a_title_the_text_already_starts_with_is_shown_once():
    prefixed = ContextPassage("Golden Gate Bridge - History: Golden Gate Bridge opened in 1937.",
                              "Golden Gate Bridge", "g")
    plain = ContextPassage("It opened in 1937.", "Golden Gate Bridge", "h")
    text = build().build("When?", [prefixed, plain], False).text
    assert "[1] Golden Gate Bridge - History: Golden Gate Bridge opened" in text
    assert "Golden Gate Bridge: Golden Gate Bridge" not in text
    assert "[2] Golden Gate Bridge: It opened in 1937." in text
    colon = ContextPassage("eiffel tower: a wrought-iron tower", "Eiffel Tower")
    assert "[1] eiffel tower: a wrought-iron" in build().build("q?", [colon], False).text
    other = ContextPassage("Towers of the world", "Tower")
    assert "[1] Tower: Towers of the world" in build().build("q?", [other], False).text


def test_worked_examples_come_first_in_the_same_layout_and_are_never_cut():
    example = {"passages": [{"title": "Kenya", "text": "Its capital is Nairobi."}],
               "question": "What is the capital?", "answer": "Nairobi"}
    built = build(examples=[example]).build("Which city?", [passage(1)], False)
    text = built.text
    shot = "Passages:\n[1] Kenya: Its capital is Nairobi.\n\nQuestion: What is the capital?\n" \
           "Short answer: Nairobi"
    assert shot in text and text.index(shot) < text.index("[1] Title1")
    assert text.rstrip().endswith("Question: Which city?\nShort answer: ASSISTANT:")
    assert built.passage_ids == ["p1"]
    tight = build(limit=60, examples=[example] * 3)  # examples + question alone fill the budget
    assert "Nairobi" in tight.build("q?", [passage(1)], False).text
    with pytest.raises(ValueError, match=r"prompt.examples\[0\]"):
        PromptConfig(examples=[{"question": "q?"}])


def test_max_passages_keeps_the_top_ranks():
    built = build(max_passages=2).build("q?", [passage(i) for i in range(1, 5)], False)
    assert built.passage_ids == ["p1", "p2"] and built.dropped == 2
    assert "[3]" not in built.text
    with pytest.raises(ValueError, match="max_passages"):
        PromptConfig(max_passages=0)


def test_cite_asks_for_the_numbers_of_the_passages_in_one_configurable_line():
    plain = build().build("q?", [passage(1)], True).text
    cited = build(cite=True).build("q?", [passage(1)], True).text
    instruction = PromptConfig().cite_instruction
    assert instruction not in plain and instruction in cited
    assert cited.index(instruction) < cited.index("[1] Title1")   # right after the instruction
    text_only = PromptBuilder(PromptConfig(cite=True, cite_instruction="Cite as [n]."),
                              WordOps(), 400, 0, text_only=True).build("q?", [passage(1)], False)
    assert f"{PromptConfig().text_only_instruction} Cite as [n]." in text_only.text
    alone = PromptBuilder(PromptConfig(cite=True), WordOps(), 400, 0, use_passages=False)
    assert instruction not in alone.build("q?", [passage(1)], True).text   # nothing to cite
