"""The ReT encoder: frozen CLIP towers, per-step adapters, one recurrent cell reused at every step
and a late projection (spec: ret-model.md, sections 1, 2 and 4).

Parameter names follow the released checkpoints (``ret_cell.sa.in_proj_weight``, ``mlp.0`` ...),
so that loading needs no renaming below the tower level. Tensors in, tensors out: no file I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel

from .configuration_ret import ReTConfig

__all__ = ["PackedAttention", "ReTCell", "ReTEncoder", "BackboneStates", "sinusoidal_positions"]


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """P[p, 2i] = sin(p / 10000^(2i/d)), P[p, 2i+1] = cos(p / 10000^(2i/d)); shape (1, k, d)."""
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, num_positions, dim)
    table[..., 0::2] = torch.sin(position * div_term)
    table[..., 1::2] = torch.cos(position * div_term)
    return table


class PackedAttention(nn.Module):
    """Multi-head attention with PyTorch's packed (q, k, v) projection layout.

    Same parameters and maths as ``nn.MultiheadAttention(batch_first=True)``, computed with
    ``scaled_dot_product_attention`` and a boolean key mask.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.dim, self.num_heads, self.dropout = dim, num_heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim)) if bias else None
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.dim // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``key_padding_mask`` (B, L) is True/1 where a key may be attended to."""
        w_q, w_kv = self.in_proj_weight.split([self.dim, 2 * self.dim])
        b_q = b_kv = None
        if self.in_proj_bias is not None:
            b_q, b_kv = self.in_proj_bias.split([self.dim, 2 * self.dim])
        q = F.linear(query, w_q, b_q)
        k, v = F.linear(key_value, w_kv, b_kv).chunk(2, dim=-1)
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_mask.to(torch.bool)[:, None, None, :]
        out = F.scaled_dot_product_attention(
            self._heads(q), self._heads(k), self._heads(v), attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.dim))


class ReTCell(nn.Module):
    """One recurrence step (spec section 4); the same weights are used at every step."""

    def __init__(self, config: ReTConfig) -> None:
        super().__init__()
        d, k, heads = config.hidden_size, config.num_queries, config.num_attention_heads
        self.num_queries = k
        self.query_hidden_states = nn.Parameter(torch.empty(1, k, d))  # h0
        nn.init.normal_(self.query_hidden_states, mean=0.0, std=0.2)
        self.register_buffer("query_state_ids", sinusoidal_positions(k, d))  # P, stored
        self.sa = PackedAttention(d, heads, config.attention_dropout, bias=True)
        self.text_xa = PackedAttention(d, heads, config.attention_dropout, bias=False)
        self.vision_xa = PackedAttention(d, heads, config.attention_dropout, bias=False)
        act = nn.GELU() if config.activation_fn == "gelu" else nn.ReLU()
        self.mlp = nn.Sequential(
            nn.Linear(d, config.intermediate_size), nn.Dropout(config.dropout_p), act,
            nn.Linear(config.intermediate_size, d), nn.Dropout(config.dropout_p))
        self.text_input_gate_w = nn.Linear(d, d)
        self.vision_input_gate_w = nn.Linear(d, d)
        self.text_forget_gate_w = nn.Linear(d, d)
        self.vision_forget_gate_w = nn.Linear(d, d)
        self.xa_ln = nn.LayerNorm(d)
        self.text_ln = nn.LayerNorm(d)
        self.vision_ln = nn.LayerNorm(d)
        self.sa_ln = nn.LayerNorm(d)  # stored in released checkpoints, unused by the computation
        self.mlp_ln = nn.LayerNorm(d)
        self.register_buffer("input_gate_bias_prior", torch.tensor(config.input_gate_bias_prior))
        self.register_buffer("forget_gate_bias_prior", torch.tensor(config.forget_gate_bias_prior))
        self.state_act = nn.Tanh() if config.use_tanh else nn.Identity()

    def initial_state(self, batch: int) -> torch.Tensor:
        """h0, the learned (1, k, d) state, broadcast over the batch (step 1 of the spec)."""
        return self.query_hidden_states.expand(batch, -1, -1)

    def forward(self, state: torch.Tensor, text: torch.Tensor | None,
                text_attention: torch.Tensor | None, vision: torch.Tensor | None,
                text_mask: torch.Tensor | None = None, image_mask: torch.Tensor | None = None,
                text_rows: torch.Tensor | None = None,
                vision_rows: torch.Tensor | None = None) -> torch.Tensor:
        """One step. state (B, k, d); text (Bt, Lt, d) adapted features with their
        attention mask (Bt, Lt); vision (Bv, Lv, d); text_mask / image_mask (B,) in {0, 1}.

        ``text_rows`` / ``vision_rows`` (bool, (B,)) say which batch rows the text / vision
        features belong to when only some rows carry that modality (``None``: all rows). A row
        without features has that modality's mask at 0, so its cross-attention output cannot
        reach the state: it is left at zero instead of being computed on a placeholder.
        """
        h = state + self.query_state_ids
        x = self.xa_ln(h)
        residual = h + self.sa(x, x)
        t = _cross(self.text_xa, x, self.text_ln, text, text_attention, text_rows)
        v = _cross(self.vision_xa, x, self.vision_ln, vision, None, vision_rows)
        input_t = torch.sigmoid(self.text_input_gate_w(t) + self.input_gate_bias_prior)
        forget_t = self.text_forget_gate_w(t)
        if text_mask is not None:
            m = text_mask.to(t.dtype)[:, None, None]
            input_t, forget_t = input_t * m, forget_t * m
        input_v = torch.sigmoid(self.vision_input_gate_w(v) + self.input_gate_bias_prior)
        forget_v = self.vision_forget_gate_w(v)
        if image_mask is not None:
            m = image_mask.to(v.dtype)[:, None, None]
            input_v, forget_v = input_v * m, forget_v * m
        forget = torch.sigmoid(forget_t + forget_v + self.forget_gate_bias_prior)
        g = self.state_act
        fused = g(residual) * forget + g(t) * input_t + g(v) * input_v
        return fused + self.mlp(self.mlp_ln(fused))


def _cross(attn: PackedAttention, x: torch.Tensor, norm: nn.LayerNorm, kv: torch.Tensor | None,
           key_mask: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor:
    """Cross-attention of the queries x (B, k, d) to kv, for the rows that have kv; zeros
    elsewhere."""
    if rows is None:
        return attn(x, norm(kv), key_padding_mask=key_mask)
    out = x.new_zeros(x.shape)
    if kv is not None and kv.shape[0]:
        out[rows] = attn(x[rows], norm(kv), key_padding_mask=key_mask)
    return out


def present_rows(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Rows whose modality mask is non-zero, or None when every row has it."""
    if mask is None:
        return None
    rows = mask != 0
    return None if bool(rows.all()) else rows


def _contiguous(rows: slice, size: int) -> tuple[int, int]:
    start, stop, step = rows.indices(size)
    if step != 1:
        raise ValueError("only contiguous row ranges can be selected")
    return start, stop


@dataclass
class BackboneStates:
    """Per-block hidden states of both backbones for one batch (``hidden_states[1:]``).

    ``text_rows`` / ``vision_rows`` (bool, (B,)) mark the rows the states were computed for
    when some rows lack that modality (None: all rows); ``text`` / ``vision`` are then compact
    (only those rows), or None when no row has the modality.
    """

    text: tuple[torch.Tensor, ...] | None
    vision: tuple[torch.Tensor, ...] | None
    attention_mask: torch.Tensor
    text_rows: torch.Tensor | None = None
    vision_rows: torch.Tensor | None = None

    @staticmethod
    def _take(states, present, layers, rows: slice):
        if states is None:
            return None, None if present is None else present[rows]
        if present is None:
            return tuple(states[i][rows] for i in layers), None
        start, stop = _contiguous(rows, present.shape[0])
        lo, hi = int(present[:start].sum()), int(present[:stop].sum())
        return tuple(states[i][lo:hi] for i in layers), present[start:stop]

    def select(self, text_layers: tuple[int, ...], vision_layers: tuple[int, ...],
               rows: slice = slice(None)) -> BackboneStates:
        text, text_rows = self._take(self.text, self.text_rows, text_layers, rows)
        vision, vision_rows = self._take(self.vision, self.vision_rows, vision_layers, rows)
        return BackboneStates(text, vision, self.attention_mask[rows], text_rows, vision_rows)

    @property
    def text_attention(self) -> torch.Tensor:
        """Attention mask of the rows that have text states."""
        if self.text_rows is None:
            return self.attention_mask
        return self.attention_mask[self.text_rows]


def run_backbones(text_model: nn.Module, vision_model: nn.Module, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                  text_rows: torch.Tensor | None = None,
                  vision_rows: torch.Tensor | None = None) -> BackboneStates:
    """Run each backbone once over the rows that have its modality and keep every block's
    output (the embedding output is dropped)."""
    text = vision = None
    if text_rows is None or bool(text_rows.any()):
        ids, mask = ((input_ids, attention_mask) if text_rows is None
                     else (input_ids[text_rows], attention_mask[text_rows]))
        text = tuple(text_model(input_ids=ids, attention_mask=mask,
                                output_hidden_states=True).hidden_states[1:])
    if vision_rows is None or bool(vision_rows.any()):
        pixels = pixel_values if vision_rows is None else pixel_values[vision_rows]
        vision = tuple(vision_model(pixel_values=pixels,
                                    output_hidden_states=True).hidden_states[1:])
    return BackboneStates(text, vision, attention_mask, text_rows, vision_rows)


def build_backbone(config) -> PreTrainedModel:
    return AutoModel.from_config(config)


class ReTEncoder(nn.Module):
    """ReT_Q or ReT_D. ``forward`` takes the reference's tensors and returns L2-normalised
    (B, num_queries, output_dim) features ((B, 1, output_dim) with ``use_pooler_features``)."""

    def __init__(self, config: ReTConfig, text_model: nn.Module | None = None,
                 vision_model: nn.Module | None = None) -> None:
        super().__init__()
        config.validate_backbones()
        self.config = config
        self.text_model = (text_model if text_model is not None
                           else build_backbone(config.text_config))
        self.vision_model = (vision_model if vision_model is not None
                             else build_backbone(config.vision_config))
        d, steps = config.hidden_size, config.num_steps
        self.text_adapter = nn.ModuleList(
            nn.Linear(config.text_config.hidden_size, d) for _ in range(steps))
        self.vision_adapter = nn.ModuleList(
            nn.Linear(config.vision_config.hidden_size, d) for _ in range(steps))
        self.ret_cell = ReTCell(config)
        self.late_proj = (nn.Linear(d, config.late_proj_output_size, bias=False)
                          if config.late_proj_output_size else nn.Identity())
        self.freeze_backbones()

    def freeze_backbones(self) -> None:
        self.text_model.requires_grad_(not self.config.is_text_frozen)
        self.vision_model.requires_grad_(not self.config.is_vision_frozen)

    def train(self, mode: bool = True) -> ReTEncoder:
        """Frozen backbones stay in eval mode (no dropout) while the head trains."""
        super().train(mode)
        if self.config.is_text_frozen:
            self.text_model.eval()
        if self.config.is_vision_frozen:
            self.vision_model.eval()
        return self

    def backbone_states(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor, text_mask: torch.Tensor | None = None,
                        image_mask: torch.Tensor | None = None) -> BackboneStates:
        """Hidden states of the layers this tower reads. Rows whose modality mask is 0 skip that
        backbone: their features could not reach the output anyway."""
        states = run_backbones(self.text_model, self.vision_model, input_ids, attention_mask,
                               pixel_values, present_rows(text_mask), present_rows(image_mask))
        return states.select(self.config.text_layer_indices, self.config.vision_layer_indices)

    def head(self, states: BackboneStates, text_mask: torch.Tensor | None = None,
             image_mask: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
        """Recurrence over the selected layers, late projection and (optionally) L2 norm."""
        state = self.ret_cell.initial_state(states.attention_mask.shape[0])
        attention = states.text_attention
        for step in range(self.config.num_steps):
            text = self.text_adapter[step](states.text[step]) if states.text else None
            vision = self.vision_adapter[step](states.vision[step]) if states.vision else None
            state = self.ret_cell(state, text, attention, vision, text_mask, image_mask,
                                  states.text_rows, states.vision_rows)
        if self.config.use_pooler_features:
            state = state.mean(dim=1, keepdim=True)
        features = self.late_proj(state)
        return F.normalize(features, p=2, dim=-1) if normalize else features

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, text_mask: torch.Tensor | None = None,
                image_mask: torch.Tensor | None = None) -> torch.Tensor:
        states = self.backbone_states(pixel_values, input_ids, attention_mask, text_mask,
                                      image_mask)
        return self.head(states, text_mask, image_mask)
