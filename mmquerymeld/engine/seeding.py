"""Per-sample augmentation seeds: a sample's random augmentation is a function of the sample.

mmengine seeds each loader worker once (``seed + worker_id``) and the worker's numpy / python /
torch generators then run on through every sample it loads. A resumed run starts fresh workers,
so the same sample would get different flips and crops than in the uninterrupted run. Here the
sampler yields :class:`~mmquerymeld.datasets.samplers.SeededIndex` objects and the fetch below
reseeds the three generators from the index's seed right before loading the sample, in the worker
or (``num_workers=0``) in the main process, whose generators are put back afterwards so that the
model's own draws (denoising noise, point sampling) do not depend on the data pipeline.
"""
import random
from typing import Any, List, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info


class PerSampleSeededFetch:
    """``dataset.__getitems__`` replacement that reseeds the RNGs per :class:`SeededIndex`.

    torch's map-style fetcher calls ``dataset.__getitems__(indices)`` when the attribute exists,
    so installing an instance of this class on the dataset object
    (:func:`install_per_sample_seeding`) changes neither the dataset class nor the config. Indices without a ``seed`` load as before.

    Args:
        dataset: The map-style dataset the loader reads.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, indices: Sequence[int]) -> List[Any]:
        in_main = get_worker_info() is None
        saved = (random.getstate(), np.random.get_state(), torch.get_rng_state()) \
            if in_main else None
        try:
            out = []
            for idx in indices:
                seed = getattr(idx, 'seed', None)
                if seed is not None:
                    random.seed(seed)
                    np.random.seed(seed)
                    torch.manual_seed(seed)
                out.append(self.dataset[int(idx)])
            return out
        finally:
            if saved is not None:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])


def install_per_sample_seeding(dataset: Any) -> None:
    """Make the loader of ``dataset`` reseed the RNGs per sample (see module docstring).

    Args:
        dataset: The dataset object held by the ``DataLoader`` (install before the loader's
            workers start: they copy the dataset).
    """
    if not isinstance(getattr(dataset, '__getitems__', None), PerSampleSeededFetch):
        dataset.__getitems__ = PerSampleSeededFetch(dataset)
