"""Pushing and pulling folders to the hub, here a local folder standing in for it."""

import json

import pytest

from retriever.sharing import SharingError, model_card, pull_folder, push_folder, push_retriever
from retriever.tiny import build_tiny_retriever


def test_push_and_pull_replace_whole_repositories(tmp_path):
    first = tmp_path / "v1"
    first.mkdir()
    (first / "a.txt").write_text("one")
    (first / "old.txt").write_text("gone in v2")
    where = push_folder(first, "lab/things", repo_type="dataset", hub_dir=tmp_path / "hub")
    assert where == str(tmp_path / "hub" / "datasets" / "lab" / "things")
    second = tmp_path / "v2"
    second.mkdir()
    (second / "a.txt").write_text("two")
    push_folder(second, "lab/things", repo_type="dataset", hub_dir=tmp_path / "hub")
    out = pull_folder("lab/things", tmp_path / "copy", repo_type="dataset",
                      hub_dir=tmp_path / "hub")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert (out / "a.txt").read_text() == "two"
    assert not [p for p in (tmp_path / "hub" / "datasets" / "lab").iterdir()
                if p.name.startswith(".")]  # no staging left behind


@pytest.mark.parametrize("repo_id", ["no-owner", "a/b/c", "../x", ""])
def test_bad_repository_ids_are_refused(tmp_path, repo_id):
    with pytest.raises(SharingError, match="not a hub repository id"):
        push_folder(tmp_path, repo_id, hub_dir=tmp_path / "hub")
    with pytest.raises(SharingError):
        pull_folder("lab/missing", tmp_path / "x", hub_dir=tmp_path / "hub")


def test_the_cli_pushes_a_retriever_folder_with_a_card(tmp_path, capsys):
    from rag_vqa.cli import main

    folder = tmp_path / "model"
    build_tiny_retriever(seed=2).save_pretrained(folder)
    record = {"job": {"retriever": "tiny", "queries": "train.jsonl", "passages": "kb/",
                      "train": {"batch_size": 16, "learning_rate": 1e-4}},
              "steps": 500, "final_loss": 0.25, "validation": {"recall@1": 0.875},
              "command": ["rag-vqa", "train", "--queries", "train.jsonl"],
              "data": {"queries": {"digest": "xxh3_128:abc"}}}
    (folder / "training.json").write_text(json.dumps(record))
    assert main(["retriever", "push", str(folder), "lab/ret", "--hub-dir",
                 str(tmp_path / "hub"), "--json"]) == 0
    repo = tmp_path / "hub" / "models" / "lab" / "ret"
    assert json.loads(capsys.readouterr().out)["pushed_to"] == str(repo)
    card = (repo / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: rag-vqa") and "500 steps" in card
    assert "| recall@1 | 0.8750 |" in card and "rag-vqa train --queries train.jsonl" in card
    assert not (folder / "README.md").exists()  # the card is written into the pushed copy only
    assert main(["retriever", "push", str(tmp_path), "lab/ret"]) == 2


def test_a_card_without_a_training_record_says_so():
    config = build_tiny_retriever(seed=0).config.to_dict()
    card = model_card("lab/x", config, None)
    assert "Not recorded" in card and 'ReTRetriever.from_pretrained("lab/x")' in card


def test_push_retriever_refuses_a_folder_that_is_not_one(tmp_path):
    with pytest.raises(SharingError, match="not a saved retriever"):
        push_retriever(tmp_path, "lab/ret", hub_dir=tmp_path / "hub")
