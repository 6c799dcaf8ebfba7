"""CLIP score of (object crop, caption) pairs with an open_clip model (UniLSeg section 3.3).

The score is the cosine similarity of the crop's and the caption's unit-norm CLIP embeddings, in
``[-1, 1]`` (CLIPScore of Hessel et al. 2021 is ``2.5 * max(score, 0)``). Weights are read with the
project's open_clip loading code (:mod:`mmquerymeld.models.text.open_clip_utils`: a local file in
any layout it accepts, or an open_clip pretrained tag); the image tower is open_clip's own.
"""
from __future__ import annotations

import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor


class _DropMessage(logging.Filter):
    """Drops log records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class ClipScorer:
    """Scores (crop, caption) pairs with an open_clip CLIP model.

    Args:
        model_name: open_clip architecture (``'ViT-B-16'``, ``'ViT-L-14-quickgelu'``, the
            project's ``'QM-Tiny'`` ...).
        pretrained: Local checkpoint file, or an open_clip pretrained tag of ``model_name``
            (downloaded into ``cache_dir`` on first use). Required: random CLIP weights give
            meaningless scores.
        device: Torch device string.
        batch_size: Most crops (and most captions) per forward pass.
        cache_dir: Download cache for pretrained tags.

    Raises:
        KeyError: Unknown architecture. FileNotFoundError: ``pretrained`` is neither a file nor
        a tag. RuntimeError: The checkpoint does not fit the architecture.
    """

    def __init__(self, model_name: str, pretrained: str, device: str = 'cpu',
                 batch_size: int = 64, cache_dir: Optional[str] = None) -> None:
        import open_clip

        from mmquerymeld.models.text.open_clip_utils import (get_tokenizer, read_state_dict,
                                                             register_tiny_model,
                                                             resolve_pretrained)
        register_tiny_model()
        if not pretrained:
            raise ValueError('ClipScorer needs pretrained weights (a file or an open_clip tag)')
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        name = model_name.replace('/', '-')
        if open_clip.get_model_config(name) is None:
            raise KeyError(f'unknown open_clip architecture {model_name!r} (see '
                           'open_clip.list_models())')
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model_name = name
        self.checkpoint = resolve_pretrained(name, pretrained, cache_dir)
        # the weights are loaded below: open_clip's 'initialized randomly' warning is wrong here
        quiet = _DropMessage('No pretrained weights loaded')
        logging.getLogger().addFilter(quiet)
        try:
            model, _, self.preprocess = open_clip.create_model_and_transforms(
                name, pretrained=None, load_weights=False)
        finally:
            logging.getLogger().removeFilter(quiet)
        state = read_state_dict(self.checkpoint)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise RuntimeError(f'{self.checkpoint}: does not fit open_clip {name!r}: '
                               f'{str(err)[:500]}') from err
        self.model = model.to(self.device).eval()
        self.context_length = int(getattr(model, 'context_length', 77))
        self.tokenizer = get_tokenizer(name, self.context_length)

    @property
    def settings(self) -> Dict[str, object]:
        """What determines the scores (recorded in the output)."""
        return dict(model_name=self.model_name, pretrained=osp.abspath(self.checkpoint)
                    if osp.isfile(self.checkpoint) else self.checkpoint,
                    score='cosine similarity of unit-norm CLIP embeddings')

    @torch.no_grad()
    def embed_images(self, crops: Sequence[np.ndarray]) -> Tensor:
        """Unit-norm image embeddings ``[N, D]`` (fp32, on the model's device)."""
        from PIL import Image
        feats = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(c)))
                                 for c in crops[start:start + self.batch_size]])
            feats.append(self.model.encode_image(batch.to(self.device), normalize=True).float())
        return torch.cat(feats)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> Tensor:
        """Unit-norm text embeddings ``[M, D]`` (fp32; open_clip's tokenizer truncates)."""
        feats = []
        for start in range(0, len(texts), self.batch_size):
            ids = self.tokenizer(list(texts[start:start + self.batch_size]),
                                 context_length=self.context_length)
            feats.append(self.model.encode_text(ids.to(self.device), normalize=True).float())
        return torch.cat(feats)

    def score(self, crops: Sequence[np.ndarray],
              captions: Sequence[Sequence[str]]) -> List[List[float]]:
        """CLIP score of each crop with each of its own captions.

        Args:
            crops: N uint8 RGB arrays ``[h_i, w_i, 3]``.
            captions: N lists of captions (crop i is scored against ``captions[i]`` only).

        Returns:
            N lists of floats in ``[-1, 1]``, aligned with ``captions``.
        """
        if len(crops) != len(captions):
            raise ValueError(f'{len(crops)} crops but {len(captions)} caption lists')
        if not crops:
            return []
        img = self.embed_images(crops)  # [N, D]
        flat = [c for caps in captions for c in caps]
        owner = torch.tensor([i for i, caps in enumerate(captions) for _ in caps],
                             dtype=torch.long, device=img.device)
        if not flat:
            return [[] for _ in crops]
        txt = self.embed_texts(flat)  # [M, D]
        sims = (img[owner] * txt).sum(dim=1).clamp(-1.0, 1.0).tolist()  # [M]
        out, pos = [], 0
        for caps in captions:
            out.append([round(float(s), 6) for s in sims[pos:pos + len(caps)]])
            pos += len(caps)
        return out
