"""First predict call of a new process with the on-disk text-embedding cache (issue 10).

Runs two fresh processes one after the other, each building the benchmark's QueryMeldNet (random
weights, ``tools/analysis/benchmark_models.py``; R50 meld with the ViT-B-16 text tower, or the
tiny demo model with ``--quick``) with ``MMQM_TEXT_CACHE_DIR`` pointing at an empty folder:

1. ``cold``: the first predict call encodes the vocabulary (no file yet; it writes one), then
   ``--repeats`` calls with the warm in-memory cache;
2. ``disk``: a new process, same folder: the first predict call reads the vocabulary from disk
   (hashing the tower's weights included), then ``--repeats`` warm calls.

Each call is ``model.test_step`` on one ``--size``\\ ² image (panoptic with a fixed number of
segments, as ``benchmark.py``). Model building is not timed. Prints and writes (``--out``) a JSON
with the times and ``ratio = disk first call / median warm call of the same process``::

    OMP_NUM_THREADS=1 python tools/analysis/benchmark_text_cache.py --vocab 1203 --size 512
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(args: argparse.Namespace) -> dict:
    """Build the model, time the first and the warm predict calls (runs in a fresh process)."""
    sys.path.insert(0, HERE)
    import torch
    from benchmark_inputs import fix_panoptic_segments, predict_batch, vocabulary
    from benchmark_models import build_model

    torch.manual_seed(0)  # the same random weights in both processes (their hash is the key)
    model, _ = build_model('querymeld', quick=args.quick)
    model.eval()
    enc = model.head.text_encoder
    texts = vocabulary('panoptic', args.vocab)
    fix_panoptic_segments(model, 'querymeld', 20)
    times, cpu = [], []
    for _ in range(1 + args.repeats):
        data = predict_batch('querymeld', 'panoptic', texts, (args.size, args.size),
                             (args.size, args.size))
        start, start_cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            model.test_step(data)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    disk = enc.disk_cache
    # the text part of a first call with the disk cache, alone: a fresh weights hash and a
    # fresh read of the files (wall and process CPU seconds; CPU time is less sensitive to
    # other processes on the machine)
    from mmquerymeld.models.text.disk_cache import TensorsFingerprint, TextEmbeddingDiskCache
    enc.clear_cache()
    enc._fingerprints = (TensorsFingerprint(), TensorsFingerprint())
    enc.disk_cache = TextEmbeddingDiskCache(disk.root)
    start, start_cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        enc.encode_vocabulary(texts, 'panoptic')
    lookup = (time.perf_counter() - start, time.process_time() - start_cpu)
    hits = enc.disk_cache.hits
    enc.disk_cache = disk
    return dict(first_s=round(times[0], 3), warm_s=[round(t, 3) for t in times[1:]],
                warm_median_s=round(statistics.median(times[1:]), 3),
                first_cpu_s=round(cpu[0], 3),
                warm_cpu_median_s=round(statistics.median(cpu[1:]), 3),
                text_from_disk_s=round(lookup[0], 3), text_from_disk_cpu_s=round(lookup[1], 3),
                text_from_disk_hits=hits,
                tower_calls=enc.tower_calls, disk_hits=disk.hits, disk_writes=disk.writes,
                text_model=enc.model_name, templates=len(enc.prompts.rule('panoptic')[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--vocab', type=int, default=1203, help='number of texts')
    parser.add_argument('--size', type=int, default=512, help='input side (square)')
    parser.add_argument('--repeats', type=int, default=3, help='warm calls per process')
    parser.add_argument('--quick', action='store_true', help='the tiny demo model')
    parser.add_argument('--cache-dir', help='cache folder (default: a new temporary one)')
    parser.add_argument('--out', help='JSON output file')
    parser.add_argument('--reuse', action='store_true',
                        help='--cache-dir already holds the vocabulary: run the disk phase only')
    parser.add_argument('--child', choices=('cold', 'disk'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    folder = args.cache_dir or tempfile.mkdtemp(prefix='qm_text_cache_')
    if os.path.isdir(folder) and os.listdir(folder) and not args.reuse:
        parser.error(f'--cache-dir {folder} must be empty (the first process measures a miss)')
    env = dict(os.environ, MMQM_TEXT_CACHE_DIR=folder)
    result = dict(vocab=args.vocab, size=args.size, quick=args.quick, cache_dir=folder,
                  threads=os.environ.get('OMP_NUM_THREADS'))
    for phase in (('disk', ) if args.reuse else ('cold', 'disk')):
        cmd = [sys.executable, os.path.abspath(__file__), '--child', phase, '--vocab',
               str(args.vocab), '--size', str(args.size), '--repeats', str(args.repeats)]
        proc = subprocess.run(cmd + (['--quick'] if args.quick else []), env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f'{phase} process failed:\n{proc.stderr[-4000:]}')
        result[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
    disk = result['disk']
    result['ratio_disk_first_to_warm'] = round(disk['first_s'] / disk['warm_median_s'], 3)
    # warm call + the text part from disk, against the warm call, in CPU seconds
    result['ratio_cpu_warm_plus_text_from_disk_to_warm'] = round(
        (disk['warm_cpu_median_s'] + disk['text_from_disk_cpu_s']) / disk['warm_cpu_median_s'], 3)
    if 'cold' in result:
        result['ratio_cold_first_to_warm'] = round(
            result['cold']['first_s'] / result['cold']['warm_median_s'], 3)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from mmquerymeld.utils.atomic import atomic_write
        atomic_write(args.out, text + '\n')


if __name__ == '__main__':
    main()
