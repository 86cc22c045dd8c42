"""rag-vqa config init: the written file loads to exactly the profile's configuration, every
option is in it and documented, and every commented line is itself valid."""

import re
from dataclasses import fields, is_dataclass

import pytest
import tomllib

from rag_vqa.cli import main
from rag_vqa.config import PROFILES, load_config
from rag_vqa.config_template import COMMENTS, config_template


def _option_names(obj, prefix=""):
    for f in fields(obj):
        if f.metadata.get("internal"):
            continue
        value = getattr(obj, f.name)
        if is_dataclass(value):
            yield from _option_names(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_file_behaves_exactly_like_the_profile(profile, tmp_path):
    path = tmp_path / "conf" / "rag.toml"
    path.parent.mkdir()
    path.write_text(config_template(profile, index="idx"))
    loaded = load_config(path)
    expected = load_config({"profile": profile, "index": {"path": str(path.parent / "idx")}})
    assert loaded.to_dict() == expected.to_dict()


def test_every_option_is_documented_and_present():
    config = load_config({"profile": "default"})
    names = list(_option_names(config))
    assert set(names) <= set(COMMENTS) | {"generator.prompt.examples"}, \
        sorted(set(names) - set(COMMENTS))
    text = config_template("default")
    for name in names:
        if name == "generator.prompt.examples":  # a list of tables: documented, no one-liner
            continue
        assert re.search(rf"^(# )?{name.rsplit('.', 1)[-1]} = ", text, re.M), name


def test_uncommenting_every_option_still_loads_with_the_shown_values(tmp_path):
    text = config_template("default")
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.M)
    path = tmp_path / "all.toml"
    path.write_text(uncommented)
    raw = tomllib.loads(uncommented)
    config = load_config(path).to_dict()
    assert config["generator"]["max_new_tokens"] == raw["generator"]["max_new_tokens"]
    assert config["index"]["search"] == raw["index"]["search"]
    assert config["generator"]["prompt"]["instruction"] == \
        raw["generator"]["prompt"]["instruction"]


def test_cli_writes_once_and_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "rag-vqa.toml"
    assert main(["config", "init", str(path), "--profile", "tiny", "--kb", "kb"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert load_config(path).index.kb == str(tmp_path / "kb")
    assert main(["config", "init", str(path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["config", "init", str(path), "--force"]) == 0
    assert main(["config", "init", str(tmp_path / "x.yaml")]) == 2
