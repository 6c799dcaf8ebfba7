"""One rank of the distributed MultiSourceMetric test (run by test_multi_source_metric.py).

Usage: RANK=r WORLD_SIZE=n MASTER_ADDR=127.0.0.1 MASTER_PORT=p python dist_worker.py out.json
Shards the world like mmengine's DefaultSampler (shuffle off, padded to a multiple of the world
size), evaluates with mmengine's Evaluator, and rank 0 writes the metrics to out.json.
"""
import json
import math
import sys

import torch.distributed as dist
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope

import mmquerymeld.evaluation  # noqa: F401
from multi_source_world import world


def main(out_path: str) -> None:
    dist.init_process_group('gloo')
    rank, world_size = dist.get_rank(), dist.get_world_size()
    samples, cfg, meta = world()
    total = math.ceil(len(samples) / world_size) * world_size
    indices = list(range(len(samples)))
    indices += indices[:total - len(indices)]
    with DefaultScope.overwrite_default_scope('mmdet'):
        evaluator = Evaluator(cfg)
        evaluator.dataset_meta = meta
        for i in indices[rank:total:world_size]:
            evaluator.process([samples[i]])
        metrics = evaluator.evaluate(len(samples))
    if rank == 0:
        with open(out_path, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
