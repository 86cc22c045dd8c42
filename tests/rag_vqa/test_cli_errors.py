"""What the CLI does with an exception: a user error is one line and exit 2, a bug is its
traceback and exit 1 (a ValueError is not a user error by itself)."""

import json

import pytest

from rag_vqa import cli
from retriever.errors import UserError, UserInputError, cause_type
from retriever.index import IndexFormatError


def _raising(exc: BaseException):
    def handler(args):
        raise exc

    return handler


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyError("passage_id"),
                                 ValueError("an internal check failed"), TypeError("bad call")])
def test_a_bug_prints_its_traceback_and_exits_1(monkeypatch, capsys, exc):
    monkeypatch.setattr(cli, "_cmd_retriever_info", _raising(exc))
    assert cli.main(["retriever", "info", "anything"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in handler" in err
    assert err.rstrip().splitlines()[-1] == f"rag-vqa: failed: {type(exc).__name__}: {exc}"


def test_a_bug_under_json_is_reported_on_stdout_with_the_traceback_on_stderr(monkeypatch,
                                                                              capsys):
    monkeypatch.setattr(cli, "_cmd_retriever_info", _raising(KeyError("x")))
    assert cli.main(["retriever", "info", "anything", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": "KeyError: 'x'", "kind": "failure",
                                        "type": "KeyError", "exit_code": 1}
    assert "Traceback" in captured.err


@pytest.mark.parametrize("exc", [UserInputError("--limit must be zero or more"),
                                 IndexFormatError("ix has no manifest.json"),
                                 FileNotFoundError("kb.jsonl does not exist")])
def test_a_user_error_is_one_line_and_exits_2(monkeypatch, capsys, exc):
    monkeypatch.setattr(cli, "_cmd_retriever_info", _raising(exc))
    assert cli.main(["retriever", "info", "anything"]) == 2
    assert capsys.readouterr().err == f"rag-vqa: error: {exc}\n"


def test_a_converted_user_error_names_the_original_type(monkeypatch, capsys):
    def handler(args):
        try:
            raise ValueError("image x is a folder, not a regular file")
        except ValueError as exc:
            raise UserError(str(exc)) from exc

    monkeypatch.setattr(cli, "_cmd_retriever_info", handler)
    assert cli.main(["retriever", "info", "anything", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert (error["kind"], error["type"], error["exit_code"]) == ("input", "ValueError", 2)
    assert cause_type(UserInputError("x")) == "UserInputError"


def test_the_project_error_classes_are_user_errors_and_keep_their_builtin_base():
    from generator import GeneratorLoadError
    from rag_vqa.config import ConfigError
    from rag_vqa.kb.errors import KBFormatError
    from retriever import CheckpointError, ImageLoadError
    from retriever.fileio import CorruptFileError

    for kind, base in ((ConfigError, ValueError), (KBFormatError, ValueError),
                       (CheckpointError, RuntimeError), (ImageLoadError, ValueError),
                       (CorruptFileError, ValueError), (GeneratorLoadError, RuntimeError),
                       (IndexFormatError, ValueError)):
        assert issubclass(kind, UserError) and issubclass(kind, base), kind
