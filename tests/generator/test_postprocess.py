import pytest

from generator.postprocess import clean_answer, first_line


@pytest.mark.parametrize("raw, expected", [
    ("The answer is Paris.", "Paris"),
    ("Answer: 1889", "1889"),
    ("answer is: \"Mount Fuji\".", "Mount Fuji"),
    ("\"Paris\"", "Paris"),
    ("“Tower Bridge”!", "Tower Bridge"),
    ("Paris.", "Paris"),
    ("3.5", "3.5"),
    ("3.5.", "3.5"),
    ("  Paris  \nbecause the passage says so", "Paris"),
    ("\n\nRome\n", "Rome"),
    ("Paris [1]", "Paris"),
    ("1889 [1, 3].", "1889"),
    ("Short answer: 42", "42"),
    ("The final answer is 7 km", "7 km"),
    ("It was completed in 1889.", "It was completed in 1889"),
    ("The Eiffel Tower", "The Eiffel Tower"),   # a leading "The" that is part of the answer stays
    ("", ""),
])
def test_clean_answer(raw, expected):
    assert clean_answer(raw) == expected


def test_first_line_skips_blank_lines():
    assert first_line("\n  \n answer \n next") == "answer"
