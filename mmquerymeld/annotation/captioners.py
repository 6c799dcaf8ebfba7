"""Region captioners: several captions per object crop (paper section 3.4, appendix A.1.3).

The paper captions each box with an OFA-like region captioner, five captions per object. One
captioner ships here: transformers' BLIP captioning model, loaded offline from a local directory
(``save_pretrained`` layout: ``config.json``, weights, processor and tokenizer files). Others plug
in through :data:`CAPTIONERS` (a subclass of :class:`RegionCaptioner`, registered by name).
``transformers`` is imported when a BLIP captioner is built, never on package import.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.registry import Registry

#: Region captioners, built from ``dict(type=name, **kwargs)``.
CAPTIONERS = Registry('region captioner')


class RegionCaptioner:
    """Interface: ``caption(crops, seed)`` -> ``num_captions`` strings per crop."""

    num_captions: int = 5

    @property
    def settings(self) -> Dict[str, object]:
        """JSON-serialisable settings that determine the captions (recorded in the output)."""
        raise NotImplementedError

    def caption(self, crops: Sequence[np.ndarray], seed: int = 0) -> List[List[str]]:
        """Captions of N crops.

        Args:
            crops: N uint8 RGB arrays ``[h_i, w_i, 3]``.
            seed: Random seed of the sampling for this call (same seed, same captions).

        Returns:
            N lists of ``num_captions`` stripped strings (a model may return empty strings).
        """
        raise NotImplementedError


def _device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'device {device!r} requested but CUDA is not available')
    return dev


@CAPTIONERS.register_module(name=['BlipCaptioner', 'blip'])
class BlipCaptioner(RegionCaptioner):
    """BLIP captioning (``BlipForConditionalGeneration`` + ``BlipProcessor``) from a local dir.

    Args:
        model_dir: Directory written by ``save_pretrained`` of the model and of the processor
            (e.g. a downloaded ``Salesforce/blip-image-captioning-base`` snapshot). Loaded with
            ``local_files_only=True``: nothing is downloaded.
        device: Torch device string (``'cpu'``, ``'cuda'``, ``'cuda:1'``).
        num_captions: Captions per object (``num_return_sequences``; the paper uses five).
        decoding: ``'sample'`` (nucleus sampling: diverse captions) or ``'beam'`` (the
            ``num_captions`` best beams).
        top_p: Nucleus mass for ``'sample'``.
        temperature: Softmax temperature for ``'sample'``.
        num_beams: Beams for ``'beam'`` (at least ``num_captions``).
        max_new_tokens: Longest caption in tokens.
        prompt: Optional text the decoder continues (BLIP's conditional captioning, e.g.
            ``'a picture of'``); removed from the returned captions.
        batch_size: Most crops per forward pass (an image's boxes are split into such batches).
        dtype: ``'float32'``, ``'float16'`` or ``'bfloat16'`` weights (half types on GPU).

    Raises:
        FileNotFoundError: ``model_dir`` is not a directory with a ``config.json``.
        ValueError: Inconsistent decoding settings.
    """

    def __init__(self, model_dir: str, device: str = 'cpu', num_captions: int = 5,
                 decoding: str = 'sample', top_p: float = 0.9, temperature: float = 1.0,
                 num_beams: int = 5, max_new_tokens: int = 30, prompt: Optional[str] = None,
                 batch_size: int = 32, dtype: str = 'float32') -> None:
        if not osp.isfile(osp.join(model_dir, 'config.json')):
            raise FileNotFoundError(
                f'BLIP model_dir {model_dir!r} has no config.json (expected a directory written '
                'by save_pretrained of BlipForConditionalGeneration and BlipProcessor)')
        if decoding not in ('sample', 'beam'):
            raise ValueError(f"decoding must be 'sample' or 'beam', got {decoding!r}")
        if num_captions < 1 or batch_size < 1 or max_new_tokens < 1:
            raise ValueError('num_captions, batch_size and max_new_tokens must be >= 1')
        if decoding == 'beam' and num_beams < num_captions:
            raise ValueError(f'beam decoding returns the best beams: num_beams ({num_beams}) '
                             f'must be >= num_captions ({num_captions})')
        if decoding == 'sample' and not (0 < top_p <= 1 and temperature > 0):
            raise ValueError(f'sampling needs 0 < top_p <= 1 and temperature > 0, got '
                             f'top_p={top_p}, temperature={temperature}')
        if dtype not in ('float32', 'float16', 'bfloat16'):
            raise ValueError(f'dtype must be float32, float16 or bfloat16, got {dtype!r}')
        from transformers import BlipForConditionalGeneration, BlipProcessor
        self.model_dir = osp.abspath(model_dir)
        self.device = _device(device)
        self.num_captions = num_captions
        self.decoding = decoding
        self.top_p, self.temperature, self.num_beams = top_p, temperature, num_beams
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt.strip() if prompt else None
        self.batch_size = batch_size
        self.dtype = dtype
        self.processor = BlipProcessor.from_pretrained(self.model_dir, local_files_only=True)
        model = BlipForConditionalGeneration.from_pretrained(self.model_dir,
                                                             local_files_only=True)
        self.model = model.to(device=self.device, dtype=getattr(torch, dtype)).eval()

    @property
    def settings(self) -> Dict[str, object]:
        gen = self.generate_kwargs()
        return dict(type='BlipCaptioner', model_dir=self.model_dir, prompt=self.prompt,
                    dtype=self.dtype, **gen)

    def generate_kwargs(self) -> Dict[str, object]:
        """The sampling settings passed to ``model.generate``."""
        gen = dict(num_return_sequences=self.num_captions, max_new_tokens=self.max_new_tokens)
        if self.decoding == 'sample':
            gen.update(do_sample=True, top_p=self.top_p, temperature=self.temperature,
                       num_beams=1)
        else:
            gen.update(do_sample=False, num_beams=self.num_beams)
        return gen

    def _inputs(self, crops: Sequence[np.ndarray]) -> Dict[str, torch.Tensor]:
        # channels_last stated: a 1- or 3-pixel-high crop would otherwise be read as CHW
        pix = self.processor.image_processor(list(crops), return_tensors='pt',
                                             input_data_format='channels_last')['pixel_values']
        inputs = dict(pixel_values=pix.to(device=self.device, dtype=self.model.dtype))
        if self.prompt:
            tok = self.processor.tokenizer([self.prompt] * len(crops), return_tensors='pt')
            inputs['input_ids'] = tok['input_ids'].to(self.device)
            inputs['attention_mask'] = tok['attention_mask'].to(self.device)
        return inputs

    def _clean(self, text: str) -> str:
        text = ' '.join(text.split())
        if self.prompt and text.lower().startswith(self.prompt.lower()):
            text = text[len(self.prompt):].strip()
        return text

    @torch.no_grad()
    def caption(self, crops: Sequence[np.ndarray], seed: int = 0) -> List[List[str]]:
        """``num_captions`` captions per crop, generated in batches of ``batch_size`` crops.

        Args:
            crops: N uint8 RGB arrays ``[h_i, w_i, 3]``.
            seed: Seeds the sampling (the global RNG state is restored afterwards).

        Returns:
            N lists of ``num_captions`` strings.
        """
        out: List[List[str]] = []
        if not crops:
            return out
        devices = [self.device] if self.device.type != 'cpu' else []
        kwargs = dict(device_type=self.device.type) if devices else {}
        with torch.random.fork_rng(devices=devices, **kwargs):
            torch.manual_seed(seed)
            for start in range(0, len(crops), self.batch_size):
                chunk = crops[start:start + self.batch_size]
                ids = self.model.generate(**self._inputs(chunk), **self.generate_kwargs())
                texts = self.processor.batch_decode(ids, skip_special_tokens=True)
                k = self.num_captions  # generate returns crop i's sequences at i*k .. i*k+k-1
                out += [[self._clean(t) for t in texts[i * k:(i + 1) * k]]
                        for i in range(len(chunk))]
        return out


def build_captioner(cfg: Dict[str, object]) -> RegionCaptioner:
    """Build a captioner from ``dict(type=..., **kwargs)`` (see :data:`CAPTIONERS`)."""
    return CAPTIONERS.build(dict(cfg))
