"""Loading and saving the released checkpoint layout (spec section 6), strictly."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from retriever import CheckpointError, ReTRetriever
from retriever.tiny import build_tiny_retriever
from tests.helpers import random_image

CELL_KEYS = [
    "query_hidden_states", "query_state_ids", "input_gate_bias_prior", "forget_gate_bias_prior",
    "sa.in_proj_weight", "sa.in_proj_bias", "sa.out_proj.weight", "sa.out_proj.bias",
    "text_xa.in_proj_weight", "text_xa.out_proj.weight",
    "vision_xa.in_proj_weight", "vision_xa.out_proj.weight",
    *[f"{g}.{p}" for g in ("text_input_gate_w", "vision_input_gate_w", "text_forget_gate_w",
                           "vision_forget_gate_w") for p in ("weight", "bias")],
    *[f"{ln}.{p}" for ln in ("xa_ln", "text_ln", "vision_ln", "sa_ln", "mlp_ln")
      for p in ("weight", "bias")],
    "mlp.0.weight", "mlp.0.bias", "mlp.3.weight", "mlp.3.bias",
]


def get(module, dotted):
    for part in dotted.split("."):
        module = getattr(module, part) if not part.isdigit() else module[int(part)]
    return module


def released_tensors(model):
    """The released layout, written from the spec: tower prefixes, the doubled backbone prefix,
    shared backbones only under query_model."""
    out = {}
    towers = [("query_model", model.query_encoder, True)]
    if not model.config.share_query_passage_models:
        towers.append(("passage_model", model.document_encoder, False))
    for prefix, enc, owns_backbones in towers:
        for name in ("text_model", "vision_model"):
            shared = getattr(model.config, f"share_{name.split('_')[0]}_models")
            if owns_backbones or not shared:
                for key, value in getattr(enc, name).state_dict().items():
                    inner = "" if key.startswith(name + ".") else name + "."
                    out[f"{prefix}.{name}.{inner}{key}"] = value
        for step in range(enc.config.num_steps):
            for side in ("text", "vision"):
                for p in ("weight", "bias"):
                    out[f"{prefix}.{side}_adapter.{step}.{p}"] = get(
                        enc, f"{side}_adapter.{step}.{p}")
        for key in CELL_KEYS:
            out[f"{prefix}.ret_cell.{key}"] = get(enc.ret_cell, key)
        out[f"{prefix}.late_proj.weight"] = enc.late_proj.weight
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def perturbed(seed=0, **kwargs):
    model = build_tiny_retriever(seed=seed, **kwargs)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if t.dtype.is_floating_point and "query_state_ids" not in name:
                t.add_(torch.randn(t.shape, generator=gen) * 0.01)
    return model


def write_released(model, folder, tensors=None):
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.update({"architectures": ["RetrieverModel"], "torch_dtype": "float32",
                   "transformers_version": "4.45.2"})
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors if tensors is not None else released_tensors(model),
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    model.query_processor.save_pretrained(folder)
    return folder


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_released_layout_loads_strictly_and_gives_the_same_features(tmp_path):
    src = perturbed()
    folder = write_released(src, tmp_path / "released")
    loaded = ReTRetriever.from_pretrained(folder)
    assert_same_weights(src, loaded)
    texts, images = ["a text", ""], [random_image(0), random_image(1)]
    assert torch.equal(src.encode_documents(texts, images), loaded.encode_documents(texts, images))
    assert loaded.query_encoder.text_model is loaded.document_encoder.text_model


def test_save_writes_exactly_the_released_keys(tmp_path):
    src = perturbed()
    src.save_pretrained(tmp_path / "ours")
    with safe_open(str(tmp_path / "ours" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.metadata() == {"format": "pt"}
        saved = {k: f.get_tensor(k) for k in keys}
    expected = released_tensors(src)
    assert keys == set(expected)
    assert not any(k.startswith(("passage_model.text_model", "passage_model.vision_model"))
                   for k in keys)
    assert any(k.startswith("query_model.text_model.text_model.embeddings") for k in keys)
    for k in keys:
        assert torch.equal(saved[k], expected[k]), k
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["model_type"] == "retriever"
    assert config["query_config"]["model_type"] == "ret"
    assert (tmp_path / "ours" / "preprocessor_config.json").is_file()


def test_save_load_round_trip_is_exact(tmp_path):
    src = perturbed(seed=4, use_tanh=True, forget_gate_bias_prior=0.7)
    src.save_pretrained(tmp_path / "a")
    again = ReTRetriever.from_pretrained(tmp_path / "a")
    assert_same_weights(src, again)
    assert again.config.query_config.use_tanh
    prior = again.query_encoder.ret_cell.forget_gate_bias_prior
    assert prior.item() == src.query_encoder.ret_cell.forget_gate_bias_prior.item() != 0.0


def test_sharded_save_and_load(tmp_path):
    src = perturbed()
    src.save_pretrained(tmp_path / "s", max_shard_size=200_000)
    index = json.loads((tmp_path / "s" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and not (tmp_path / "s" / "model.safetensors").exists()
    assert_same_weights(src, ReTRetriever.from_pretrained(tmp_path / "s"))
    # saving again unsharded removes the stale shards and index
    src.save_pretrained(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").glob("model*")) == ["model.safetensors"]


@pytest.mark.parametrize("options", [{"share_text_models": False}, {"share_vision_models": False},
                                     {"share_query_passage_models": True}])
def test_sharing_variants_round_trip(tmp_path, options):
    src = perturbed(**options)
    folder = write_released(src, tmp_path / "r")
    loaded = ReTRetriever.from_pretrained(folder)
    assert_same_weights(src, loaded)
    keys = set(released_tensors(src))
    if options.get("share_query_passage_models"):
        assert not any(k.startswith("passage_model") for k in keys)
        assert loaded.document_encoder is loaded.query_encoder
    elif not options.get("share_text_models", True):
        assert any(k.startswith("passage_model.text_model.text_model.") for k in keys)
        assert loaded.query_encoder.text_model is not loaded.document_encoder.text_model


def test_unknown_and_missing_keys_are_named(tmp_path):
    src = perturbed()
    tensors = released_tensors(src)
    tensors["query_model.ret_cell.surprise"] = torch.zeros(3)
    del tensors["passage_model.ret_cell.mlp.3.bias"]
    folder = write_released(src, tmp_path / "bad", tensors)
    with pytest.raises(CheckpointError) as err:
        ReTRetriever.from_pretrained(folder)
    message = str(err.value)
    assert "query_model.ret_cell.surprise" in message and "unexpected" in message
    assert "passage_model.ret_cell.mlp.3.bias" in message and "missing" in message


def test_shape_mismatch_is_named(tmp_path):
    src = perturbed()
    tensors = released_tensors(src)
    tensors["query_model.late_proj.weight"] = torch.zeros(64, 64)
    with pytest.raises(CheckpointError,
                       match=r"query_model.late_proj.weight: checkpoint \(64, 64\)"):
        ReTRetriever.from_pretrained(write_released(src, tmp_path / "bad", tensors))


def test_fixed_position_ids_in_old_checkpoints_are_checked_not_refused(tmp_path):
    src = perturbed()
    tensors = released_tensors(src)
    ids = src.query_encoder.text_model.embeddings.position_ids.clone()
    tensors["query_model.text_model.text_model.embeddings.position_ids"] = ids
    assert_same_weights(src, ReTRetriever.from_pretrained(
        write_released(src, tmp_path / "a", tensors)))
    tensors["query_model.text_model.text_model.embeddings.position_ids"] = ids.flip(-1).contiguous()
    with pytest.raises(CheckpointError, match="position_ids: differs"):
        ReTRetriever.from_pretrained(write_released(src, tmp_path / "b", tensors))


def test_pytorch_bin_weights_load_safely(tmp_path):
    src = perturbed()
    folder = write_released(src, tmp_path / "bin")
    (folder / "model.safetensors").unlink()
    torch.save(released_tensors(src), folder / "pytorch_model.bin")
    assert_same_weights(src, ReTRetriever.from_pretrained(folder))


def test_processor_comes_from_backbone_name_when_folder_has_none(tmp_path):
    src = perturbed()
    backbone = tmp_path / "my-clip"
    src.query_processor.save_pretrained(backbone)
    src.config.query_config.text_config._name_or_path = str(backbone)
    src.config.query_config.vision_config._name_or_path = str(backbone)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(src.config.to_dict()))
    save_file(released_tensors(src), str(folder / "model.safetensors"))
    loaded = ReTRetriever.from_pretrained(folder)
    assert loaded.query_processor.tokenizer("a b")["input_ids"] == \
        src.query_processor.tokenizer("a b")["input_ids"]


def test_missing_or_corrupt_checkpoints_have_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        ReTRetriever.from_pretrained(tmp_path / "does-not-exist")
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        ReTRetriever.from_pretrained("nobody/no-such-ret-model", local_files_only=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="has no config.json"):
        ReTRetriever.from_pretrained(tmp_path / "empty")
    src = perturbed()
    folder = write_released(src, tmp_path / "trunc")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ReTRetriever.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(CheckpointError, match="model_type 'clip'"):
        ReTRetriever.from_pretrained(folder)


def test_dtype_and_device_options(tmp_path):
    src = perturbed()
    src.save_pretrained(tmp_path / "m")
    bf16 = ReTRetriever.from_pretrained(tmp_path / "m", dtype="bf16")
    assert bf16.dtype == torch.bfloat16 and bf16.device.type == "cpu"
    texts, images = ["a text about a bridge", ""], [random_image(0), random_image(1)]
    full = src.encode_documents(texts, images)
    half = bf16.encode_documents(texts, images)
    assert half.dtype == torch.float32 and half.shape == full.shape
    cosine = (full * half).sum(-1)
    assert cosine.min() > 0.98
    with pytest.raises(ValueError, match="unknown dtype"):
        ReTRetriever.from_pretrained(tmp_path / "m", dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ReTRetriever.from_pretrained(tmp_path / "m", device="cuda", dtype="bfloat16")


def test_a_checkpoint_of_config_and_weights_only_loads_and_runs_on_tensors(tmp_path):
    """The authors' saves hold config.json and weights only: the towers must load and run on
    tensors; the processor is needed (and its absence reported clearly) only to encode texts
    and images."""
    from retriever import ProcessorLoadError

    src = perturbed()
    folder = write_released(src, tmp_path / "bare")
    inputs = src.query_processor(["a question"], [random_image(4)])
    for path in folder.iterdir():
        if path.name not in ("config.json", "model.safetensors"):
            path.unlink()
    loaded = ReTRetriever.from_pretrained(folder)  # no tokenizer, no image processor: fine
    assert_same_weights(src, loaded)
    with torch.no_grad():
        assert torch.equal(loaded.query_encoder(**inputs.as_kwargs()),
                           src.query_encoder(**inputs.as_kwargs()))
    with pytest.raises(ProcessorLoadError, match="tokenizer"):
        loaded.encode_queries(["a question"], [random_image(4)])
    loaded.save_pretrained(tmp_path / "resaved")  # saving without a processor still works
    assert (tmp_path / "resaved" / "model.safetensors").is_file()


def test_weights_fingerprint_tells_fine_tuned_copies_apart_and_ignores_dtype(tmp_path):
    src = perturbed()
    folder = write_released(src, tmp_path / "released")
    fp32 = ReTRetriever.from_pretrained(folder)
    bf16 = ReTRetriever.from_pretrained(folder, dtype="bfloat16")
    assert fp32.weights_fingerprint() == bf16.weights_fingerprint() == src.weights_fingerprint()
    assert fp32.config_fingerprint() == build_tiny_retriever(seed=0).config_fingerprint()
    assert fp32.weights_fingerprint() != build_tiny_retriever(seed=0).weights_fingerprint()
    before = fp32.weights_fingerprint()
    with torch.no_grad():  # one step of fine-tuning, in place: the fingerprint follows
        next(fp32.query_encoder.parameters()).add_(1e-3)
    assert fp32.weights_fingerprint() != before
