import pytest

from rag_vqa.config import PROFILES, ConfigError, load_config


def test_profiles_and_overrides():
    default = load_config()
    assert default.profile == "default" and default.k == 5
    assert default.retriever.model == "aimagelab/ReT-CLIP-ViT-L-14"
    assert default.generator.model == "llava-hf/llava-1.5-7b-hf"
    small = load_config({"profile": "small", "k": 3, "generator": {"max_new_tokens": 8}})
    assert small.generator.model == PROFILES["small"]["generator"]["model"]
    assert small.k == 3 and small.generator.max_new_tokens == 8
    tiny = load_config({"profile": "tiny"})
    assert tiny.is_tiny and not default.is_tiny


def test_toml_file(tmp_path):
    path = tmp_path / "rag.toml"
    path.write_text('profile = "tiny"\nk = 7\n[index]\npath = "ix"\nsearch = {nprobe = 4}\n'
                    '[generator.prompt]\ninstruction = "Be brief."\n')
    config = load_config(path)
    assert config.k == 7 and config.index.search == {"nprobe": 4}
    assert config.index.path == str(tmp_path / "ix")  # relative to the file's folder
    assert config.generator.prompt.instruction == "Be brief."
    assert load_config(path, k=2).k == 2


@pytest.mark.parametrize("raw, message", [
    ({"profile": "huge"}, "unknown profile 'huge'"),
    ({"k": 0}, "k must be a positive integer"),
    ({"kk": 3}, "unknown option 'kk' .did you mean 'k'"),
    ({"retriever": {"modle": "x"}}, "retriever.'modle'.*did you mean 'model'"),
    ({"retriever": {"batch_size": "big"}}, "retriever.batch_size must be an integer"),
    ({"index": "ix"}, r"\[index\] must be a table"),
    ({"generator": {"kind": "seq2seq"}}, "generator.kind must be one of"),
    ({"generator": {"prompt": {"question_template": "Q"}}}, "question_template"),
    ({"generator": {"max_tokens": 3}}, "generator.'max_tokens'.*did you mean 'max_new_tokens'"),
])
def test_invalid_configurations_are_named(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config(raw)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("k = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="TOML"):
        load_config(tmp_path / "rag.yaml")
