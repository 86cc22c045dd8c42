"""Relative paths in a configuration file are relative to the file's folder, not to wherever the
command happens to run; and the offline `sample` profile."""

import os

from rag_vqa.config import PROFILES, load_config
from rag_vqa.sample_models import SAMPLE_RETRIEVER_DIR


def test_relative_paths_in_a_file_resolve_against_its_folder(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    (conf / "models" / "ret").mkdir(parents=True)
    (conf / "rag.toml").write_text(
        '[index]\npath = "../ix"\nkb = "kb"\nimages = "./img"\n'
        '[retriever]\nmodel = "models/ret"\n[generator]\nmodel = "org/some-model"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for source in (conf / "rag.toml", os.path.relpath(conf / "rag.toml")):
        config = load_config(source)
        assert config.index.path == str(tmp_path / "ix")
        assert config.index.kb == str(conf / "kb") and config.index.images == str(conf / "img")
        assert config.retriever.model == str(conf / "models" / "ret")  # an existing folder
        assert config.generator.model == "org/some-model"  # not a folder there: a hub id


def test_absolute_paths_and_overrides_are_kept_as_given(tmp_path):
    (tmp_path / "rag.toml").write_text(f'[index]\npath = "{tmp_path / "abs"}"\n')
    assert load_config(tmp_path / "rag.toml").index.path == str(tmp_path / "abs")
    overridden = load_config(tmp_path / "rag.toml", index={"path": "rel"})
    assert overridden.index.path == "rel"  # a flag is relative to where it is typed
    assert load_config({"index": {"path": "rel"}}).index.path == "rel"


def test_the_sample_profile_is_offline_and_real():
    config = load_config(None, profile="sample")
    assert config.retriever.model == "sample" and not config.is_tiny
    generator = config.generator
    assert generator.kind == "causal-lm" and generator.local_files_only
    assert generator.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert generator.prompt.max_passages == 1 and generator.prompt.examples
    assert list(PROFILES)[:4] == ["default", "small", "sample", "tiny"]
    assert (SAMPLE_RETRIEVER_DIR / "config.json").is_file()


def test_profile_auto_picks_the_default_models_when_downloaded_else_the_sample(monkeypatch):
    from rag_vqa import quickstart

    monkeypatch.setattr(quickstart, "profile_available", lambda name: "not downloaded"
                        if name == "default" else None)
    assert load_config({"profile": "auto"}).profile == "sample"
    monkeypatch.setattr(quickstart, "profile_available", lambda name: None)
    assert load_config({"profile": "auto"}).profile == "default"
