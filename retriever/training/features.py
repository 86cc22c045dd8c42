"""Cached backbone features for training with frozen backbones: each item's selected hidden
states are computed once and reused every epoch, so a training step only runs the ReT heads.

Memory per item is (text tokens + image patches) x layers x backbone width x dtype size (about
6 MB for a ViT-L item in float16): meant for datasets that fit in RAM, and for benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..modeling_ret import BackboneStates, ReTEncoder
from ..processing_ret import ReTInputs

__all__ = ["FeatureCache"]

_Entry = tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]


class FeatureCache:
    """Selected backbone states per (tower, item id), kept on the CPU in ``dtype``."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype
        self._entries: dict[tuple[str, str], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _fill(self, encoder: ReTEncoder, inputs: ReTInputs, ids: Sequence[str], tower: str,
              rows: list[int]) -> None:
        sub = inputs.rows(rows)
        with torch.no_grad():
            states = encoder.backbone_states(sub.pixel_values, sub.input_ids, sub.attention_mask,
                                             sub.text_mask, sub.image_mask)
        text_i = vision_i = 0
        for j, row in enumerate(rows):
            text = vision = None
            has_text = states.text_rows is None or bool(states.text_rows[j])
            has_image = states.vision_rows is None or bool(states.vision_rows[j])
            if has_text and states.text is not None:
                length = int(sub.attention_mask[j].sum())
                text = [t[text_i, :length].to("cpu", self.dtype) for t in states.text]
                text_i += 1
            if has_image and states.vision is not None:
                vision = [v[vision_i].to("cpu", self.dtype) for v in states.vision]
                vision_i += 1
            self._entries[(tower, ids[row])] = (text, vision)

    def states(self, encoder: ReTEncoder, inputs: ReTInputs, ids: Sequence[str], tower: str
               ) -> BackboneStates:
        """Backbone states for the batch, from the cache (computing what is missing)."""
        missing = [i for i, item in enumerate(ids) if (tower, item) not in self._entries]
        if missing:
            self._fill(encoder, inputs, ids, tower, missing)
        entries = [self._entries[(tower, item)] for item in ids]
        device = inputs.input_ids.device
        param = next(encoder.parameters())
        width = max((e[0][0].shape[0] for e in entries if e[0] is not None), default=1)
        attention = torch.zeros(len(ids), width, dtype=torch.long, device=device)
        text_rows = torch.tensor([e[0] is not None for e in entries], device=device)
        vision_rows = torch.tensor([e[1] is not None for e in entries], device=device)
        steps = encoder.config.num_steps
        text = vision = None
        if bool(text_rows.any()):
            text_layers = []
            for layer in range(steps):
                rows = [e[0][layer] for e in entries if e[0] is not None]
                padded = torch.zeros(len(rows), width, rows[0].shape[-1])
                for r, t in enumerate(rows):
                    padded[r, : t.shape[0]] = t
                text_layers.append(padded.to(device, param.dtype))
            text = tuple(text_layers)
            for r, e in enumerate(entries):
                if e[0] is not None:
                    attention[r, : e[0][0].shape[0]] = 1
        if bool(vision_rows.any()):
            vision = tuple(torch.stack([e[1][layer] for e in entries if e[1] is not None])
                           .to(device, param.dtype) for layer in range(steps))
        return BackboneStates(text, vision, attention,
                              None if bool(text_rows.all()) else text_rows,
                              None if bool(vision_rows.all()) else vision_rows)
