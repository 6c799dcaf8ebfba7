"""Random-number states of a training process, as plain containers a checkpoint can hold.

The model draws from torch's global generator (Mask DINO's denoising noise, the point sampling of
the mask losses); python's ``random`` and numpy's global generator serve transforms that run in
the main process. ``capture`` / ``restore`` round-trip them through lists and uint8 tensors only,
so ``torch.load(weights_only=True)`` reads them back.
"""
import random
from typing import Any, Dict

import numpy as np
import torch


def capture_rng_state() -> Dict[str, Any]:
    """States of python ``random``, numpy's global generator, torch CPU and (if present) CUDA.

    Returns:
        ``{'python': list, 'numpy': dict, 'torch': uint8 Tensor, 'cuda': list[uint8 Tensor]}``
        (``cuda`` only when CUDA is initialised).
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        'python': [version, list(internal), gauss],
        'numpy': {'name': name, 'keys': keys.tolist(), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (a missing ``cuda`` entry leaves CUDA as it is)."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    npst = state['numpy']
    np.random.set_state((npst['name'], np.asarray(npst['keys'], dtype=np.uint32), npst['pos'],
                         npst['has_gauss'], npst['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])
