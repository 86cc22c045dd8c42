"""The ReT encoder against a plain, slow computation written here from the spec equations."""

import math

import pytest
import torch

from retriever.tiny import build_tiny_retriever
from tests.helpers import random_image

SPEC_LAYERS = {  # spec section 2, literally
    "clip_vit_b": (list(range(12)), list(range(12))),
    "clip_vit_l": (list(range(12)), list(range(0, 24, 2))),
    "openclip_vit_h": ([1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23],
                       [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 31]),
    "openclip_vit_g": ([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 31],
                       list(range(2, 48, 3))),
}
BACKBONE_DEPTH = {"clip_vit_b": (12, 12), "clip_vit_l": (12, 24), "openclip_vit_h": (24, 32),
                  "openclip_vit_g": (32, 48)}


def layer_norm(x, p, name):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * p[f"{name}.weight"] + p[f"{name}.bias"]


def linear(x, p, name, bias=True):
    y = x @ p[f"{name}.weight"].T
    return y + p[f"{name}.bias"] if bias else y


def attention(query, kv, p, name, heads, key_mask=None, bias=True):
    """Multi-head attention, one head at a time, additive mask with the dtype's minimum."""
    d = query.shape[-1]
    w = p[f"{name}.in_proj_weight"]
    b = p[f"{name}.in_proj_bias"] if bias else torch.zeros(3 * d)
    q = query @ w[:d].T + b[:d]
    k = kv @ w[d:2 * d].T + b[d:2 * d]
    v = kv @ w[2 * d:].T + b[2 * d:]
    dh = d // heads
    outs = []
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        scores = q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(dh)
        if key_mask is not None:
            additive = torch.where(key_mask.bool(), 0.0, torch.finfo(scores.dtype).min)
            scores = scores + additive[:, None, :]
        outs.append(torch.softmax(scores, dim=-1) @ v[..., sl])
    out = torch.cat(outs, dim=-1) @ p[f"{name}.out_proj.weight"].T
    return out + p[f"{name}.out_proj.bias"] if bias else out


def positions(k, d):
    table = torch.zeros(k, d)
    for pos in range(k):
        for i in range(0, d, 2):
            table[pos, i] = math.sin(pos / 10000 ** (i / d))
            table[pos, i + 1] = math.cos(pos / 10000 ** (i / d))
    return table


def reference_encoder(encoder, pixel_values, input_ids, attention_mask, text_mask, image_mask,
                      text_layers, vision_layers):
    cfg = encoder.config
    p = {k: v.detach() for k, v in encoder.state_dict().items()}
    c = {k[len("ret_cell."):]: v for k, v in p.items() if k.startswith("ret_cell.")}
    heads, k, d = cfg.hidden_size // 64, cfg.num_queries, cfg.hidden_size
    act = torch.nn.functional.gelu if cfg.activation_fn == "gelu" else torch.relu
    g = torch.tanh if cfg.use_tanh else (lambda x: x)
    text_hs = encoder.text_model(input_ids=input_ids, attention_mask=attention_mask,
                                 output_hidden_states=True).hidden_states[1:]
    vision_hs = encoder.vision_model(pixel_values=pixel_values,
                                     output_hidden_states=True).hidden_states[1:]
    P = positions(k, d)
    assert torch.allclose(P, c["query_state_ids"][0], atol=1e-6)
    h = None
    for step, (tl, vl) in enumerate(zip(text_layers, vision_layers)):
        xt = linear(text_hs[tl], p, f"text_adapter.{step}")
        xv = linear(vision_hs[vl], p, f"vision_adapter.{step}")
        if h is None:
            h = c["query_hidden_states"].expand(input_ids.shape[0], -1, -1)
        h = h + P
        r = h
        x = layer_norm(h, c, "xa_ln")
        r = r + attention(x, x, c, "sa", heads)
        t = attention(x, layer_norm(xt, c, "text_ln"), c, "text_xa", heads, attention_mask, False)
        v = attention(x, layer_norm(xv, c, "vision_ln"), c, "vision_xa", heads, None, False)
        i_t = torch.sigmoid(linear(t, c, "text_input_gate_w") + c["input_gate_bias_prior"])
        a_t = linear(t, c, "text_forget_gate_w")
        i_t, a_t = i_t * text_mask[:, None, None], a_t * text_mask[:, None, None]
        i_v = torch.sigmoid(linear(v, c, "vision_input_gate_w") + c["input_gate_bias_prior"])
        a_v = linear(v, c, "vision_forget_gate_w")
        i_v, a_v = i_v * image_mask[:, None, None], a_v * image_mask[:, None, None]
        f = torch.sigmoid(a_t + a_v + c["forget_gate_bias_prior"])
        h_new = g(r) * f + g(t) * i_t + g(v) * i_v
        mlp = linear(act(linear(layer_norm(h_new, c, "mlp_ln"), c, "mlp.0")), c, "mlp.3")
        h = h_new + mlp
    if cfg.use_pooler_features:
        h = h.mean(dim=1, keepdim=True)
    out = h @ p["late_proj.weight"].T
    return out / out.norm(dim=-1, keepdim=True)


def perturb(model, seed=1):
    """Random layer norms, biases and priors so that no term of the cell is trivially zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if "ret_cell" in name or "adapter" in name:
                if tensor.dtype.is_floating_point and "query_state_ids" not in name:
                    tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.1)


def batch(model, texts, n_images):
    images = [random_image(i) if i < n_images else None for i in range(len(texts))]
    return model.query_processor(texts, images)


TEXTS = ["a photo of the tower bridge in london", "", "what is this?", "short"]


@pytest.mark.parametrize("strategy", sorted(SPEC_LAYERS))
def test_encoder_matches_spec_reference_for_every_strategy(strategy):
    text_layers, vision_layers = BACKBONE_DEPTH[strategy]
    model = build_tiny_retriever(seed=3, text_layers=text_layers, vision_layers=vision_layers,
                                 layer_strategy=strategy, text_hidden=16, vision_hidden=16,
                                 hidden_size=128, input_gate_bias_prior=0.3,
                                 forget_gate_bias_prior=-0.7)
    perturb(model)
    inputs = batch(model, TEXTS, n_images=3)
    for encoder in (model.query_encoder, model.document_encoder):
        with torch.no_grad():
            ours = encoder(**inputs.as_kwargs())
            ref = reference_encoder(encoder, *inputs.as_kwargs().values(), *SPEC_LAYERS[strategy])
        assert ours.shape == (4, 32, 128)
        assert (ours - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("options", [
    {"use_tanh": True},
    {"use_pooler_features": True},
    {"layer_strategy": {"text": [0, 0, 3], "vision": [3, 1, 2]}},
])
def test_encoder_matches_spec_reference_for_options(options):
    model = build_tiny_retriever(seed=5, **options)
    perturb(model, seed=2)
    inputs = batch(model, TEXTS, n_images=2)
    enc = model.document_encoder
    layers = enc.config.text_layer_indices, enc.config.vision_layer_indices
    with torch.no_grad():
        ours = enc(**inputs.as_kwargs())
        ref = reference_encoder(enc, *inputs.as_kwargs().values(), *layers)
    assert ours.shape[1] == (1 if options.get("use_pooler_features") else 32)
    assert (ours - ref).abs().max() <= 1e-5


def test_relu_activation_is_used():
    relu = build_tiny_retriever(seed=0)
    relu.config.query_config.activation_fn = "relu"
    from retriever.modeling_ret import ReTCell

    cell = ReTCell(relu.config.query_config)
    assert isinstance(cell.mlp[2], torch.nn.ReLU)
    assert [type(m).__name__ for m in cell.mlp] == ["Linear", "Dropout", "ReLU", "Linear",
                                                    "Dropout"]


def test_image_mask_zero_means_the_image_cannot_change_the_output(tiny_retriever):
    proc, enc = tiny_retriever.document_processor, tiny_retriever.document_encoder
    a = proc(["the same text"], [random_image(1)])
    b = proc(["the same text"], [random_image(2)])
    a.image_mask[:] = 0
    b.image_mask[:] = 0
    with torch.no_grad():
        assert torch.equal(enc(**a.as_kwargs()), enc(**b.as_kwargs()))
        a.image_mask[:] = 1
        b.image_mask[:] = 1
        assert not torch.allclose(enc(**a.as_kwargs()), enc(**b.as_kwargs()))


def test_text_mask_zero_means_the_text_cannot_change_the_output(tiny_retriever):
    proc, enc = tiny_retriever.document_processor, tiny_retriever.document_encoder
    image = random_image(4)
    a = proc(["one text"], [image])
    b = proc(["a completely different and much longer text about something else"], [image])
    a.text_mask[:] = 0
    b.text_mask[:] = 0
    with torch.no_grad():
        assert (enc(**a.as_kwargs()) - enc(**b.as_kwargs())).abs().max() <= 1e-6
        a.text_mask[:] = 1
        b.text_mask[:] = 1
        assert not torch.allclose(enc(**a.as_kwargs()), enc(**b.as_kwargs()))


def test_sa_ln_is_kept_but_unused(tiny_retriever):
    proc, enc = tiny_retriever.document_processor, tiny_retriever.document_encoder
    inputs = proc(["text"], [None])
    with torch.no_grad():
        before = enc(**inputs.as_kwargs())
        saved = enc.ret_cell.sa_ln.weight.clone()
        enc.ret_cell.sa_ln.weight.mul_(3.0).add_(1.0)
        after = enc(**inputs.as_kwargs())
        enc.ret_cell.sa_ln.weight.copy_(saved)
    assert "ret_cell.sa_ln.weight" in enc.state_dict()
    assert torch.equal(before, after)


def test_frozen_backbones_stay_in_eval_mode_when_training(tiny_retriever):
    model = build_tiny_retriever(seed=0)
    model.train()
    enc = model.query_encoder
    assert enc.ret_cell.training and not enc.text_model.training and not enc.vision_model.training
    assert not any(p.requires_grad for p in enc.text_model.parameters())
    assert all(p.requires_grad for p in enc.ret_cell.parameters())


class RowRecorder:
    """Records how many rows each backbone call received."""

    def __init__(self, module, key):
        self.rows = []
        self.key = key
        module.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.rows.append(int(kwargs[self.key].shape[0]))


@pytest.mark.parametrize("texts, n_images, text_rows, vision_rows", [
    (["a caption", "", "another one"], 1, [2], [1]),
    (["only text", "more text"], 0, [2], []),
    (["", ""], 2, [], [2]),
])
def test_rows_without_a_modality_skip_its_backbone(texts, n_images, text_rows, vision_rows):
    model = build_tiny_retriever(seed=7)
    perturb(model, seed=3)
    enc = model.document_encoder
    text_calls = RowRecorder(enc.text_model, "input_ids")
    vision_calls = RowRecorder(enc.vision_model, "pixel_values")
    inputs = batch(model, texts, n_images)
    with torch.no_grad():
        ours = enc(**inputs.as_kwargs())
    assert text_calls.rows == text_rows and vision_calls.rows == vision_rows
    layers = enc.config.text_layer_indices, enc.config.vision_layer_indices
    with torch.no_grad():  # the reference runs both backbones on every row
        ref = reference_encoder(enc, *inputs.as_kwargs().values(), *layers)
    assert (ours - ref).abs().max() <= 1e-5


def test_without_late_projection_features_keep_the_cell_width():
    model = build_tiny_retriever(seed=0, output_dim=None)
    feats = model.encode_documents(["a text"], [random_image(0)])
    assert feats.shape == (1, 32, 64)
    assert not any("late_proj" in k for k in model.released_key_map())
