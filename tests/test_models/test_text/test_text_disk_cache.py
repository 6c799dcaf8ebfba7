"""The on-disk text-embedding cache (issue 10): hits in fresh encoders and processes, invalidation
by tower weights / templates / CoOp context, corrupt files, concurrent writers."""
import contextlib
import glob
import multiprocessing as mp
import os
import os.path as osp
import threading
import time
import traceback
import warnings

import pytest
import torch

from mmquerymeld.models.text.disk_cache import (ENV_VAR, SUFFIX, TextEmbeddingDiskCache,
                                                resolve_disk_cache_dir)

NAMES = ['cat', 'dog', 'traffic_light', 'person/people']


def _chunks(root) -> list:
    return sorted(glob.glob(osp.join(str(root), '*', '*' + SUFFIX)))


def test_fresh_encoder_reads_the_disk_and_runs_no_tower(make_enc, count_tower, tmp_path):
    first = make_enc(disk_cache_dir=str(tmp_path)).eval()
    expected = first.encode_vocabulary(NAMES)
    assert first.tower_calls > 0 and len(_chunks(tmp_path)) == 1
    fresh = make_enc(disk_cache_dir=str(tmp_path)).eval()
    counter = count_tower(fresh)
    assert torch.equal(fresh.encode_vocabulary(NAMES), expected)
    assert counter.calls == 0 and fresh.disk_cache.hits == len(NAMES)
    # a vocabulary with one new entry encodes only that entry and adds one small chunk
    mixed = fresh.encode_vocabulary(['dog', 'horse'])
    assert counter.batch_sizes == [1] and torch.equal(mixed[0], expected[1])
    assert len(_chunks(tmp_path)) == 2


def _in_processes(target, arg_lists, timeout: float = 300) -> list:
    """Run ``target(*args)`` in one forked process per argument list, all at once; their return
    values. Forked (not spawned) so that no child pays the imports again; each child builds its
    own objects, so no cache state is shared through memory."""
    ctx = mp.get_context('fork')
    queue = ctx.Queue()

    def run(i, args):
        torch.set_num_threads(1)  # as DataLoader workers do after a fork
        try:
            queue.put((i, True, target(*args)))
        except BaseException:  # noqa: B902  (report everything to the parent)
            queue.put((i, False, traceback.format_exc()))

    procs = [ctx.Process(target=run, args=(i, args)) for i, args in enumerate(arg_lists)]
    for proc in procs:
        proc.start()
    results = dict()
    for _ in procs:
        i, ok, value = queue.get(timeout=timeout)
        assert ok, value
        results[i] = value
    for proc in procs:
        proc.join(timeout)
        assert proc.exitcode == 0
    return [results[i] for i in range(len(procs))]


def _child_encode(make_enc):
    enc = make_enc().eval()  # disk cache from the environment variable
    return dict(pid=os.getpid(), emb=enc.encode_vocabulary(NAMES).numpy(),  # pickled by value
                tower_calls=enc.tower_calls,
                hits=enc.disk_cache.hits)


def test_second_process_hits_via_environment_variable(make_enc, tmp_path, monkeypatch):
    expected = make_enc(disk_cache_dir=str(tmp_path)).eval().encode_vocabulary(NAMES)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    [child] = _in_processes(_child_encode, [(make_enc, )])
    assert child['pid'] != os.getpid()
    assert child['tower_calls'] == 0 and child['hits'] == len(NAMES)
    assert torch.equal(torch.from_numpy(child['emb']), expected)


def test_environment_variable_and_argument(monkeypatch, tmp_path, make_enc):
    assert resolve_disk_cache_dir(None) is None and make_enc().disk_cache is None
    monkeypatch.setenv(ENV_VAR, str(tmp_path / 'env'))
    assert make_enc().disk_cache.root == str(tmp_path / 'env')
    # the config's folder wins over the environment
    assert make_enc(disk_cache_dir=str(tmp_path / 'cfg')).disk_cache.root == str(tmp_path / 'cfg')


def test_changed_tower_weights_invalidate(make_enc, count_tower, tmp_path):
    enc = make_enc(disk_cache_dir=str(tmp_path)).eval()
    before = enc.encode_vocabulary(NAMES)
    other = make_enc(disk_cache_dir=str(tmp_path)).eval()
    with torch.no_grad():
        other.tower.ln_final.bias.add_(0.5)
    counter = count_tower(other)
    changed = other.encode_vocabulary(NAMES)
    assert counter.calls == 1 and not torch.allclose(changed, before)
    # the same encoder after an in-place update (an optimizer step, a hand edit): re-hashed
    with torch.no_grad():
        enc.tower.ln_final.bias.add_(0.5)
    enc.clear_cache()
    counter = count_tower(enc)
    assert torch.equal(enc.encode_vocabulary(NAMES), changed)
    assert counter.calls == 0  # the second encoder's file has exactly these weights
    with torch.no_grad():
        enc.tower.ln_final.bias.add_(0.1)
    enc.clear_cache()
    enc.encode_vocabulary(NAMES)
    assert counter.calls == 1


def test_changed_templates_invalidate(make_enc, count_tower, tmp_path):
    make_enc(disk_cache_dir=str(tmp_path)).eval().encode_vocabulary(NAMES)
    enc = make_enc(disk_cache_dir=str(tmp_path), templates='photo').eval()
    counter = count_tower(enc)
    photo = enc.encode_vocabulary(NAMES)
    calls = counter.calls
    assert calls >= 1 and enc.disk_cache.hits == 0  # another template set: not the file above
    simple = enc.encode_vocabulary(NAMES, templates='simple')  # the first encoder's file
    assert counter.calls == calls and enc.disk_cache.hits == len(NAMES)
    assert not torch.allclose(photo, simple)
    assert len(_chunks(tmp_path)) == 2


def test_coop_context_is_part_of_the_key(make_enc, count_tower, tmp_path):
    enc = make_enc(disk_cache_dir=str(tmp_path), num_context_tokens=2).eval()
    enc.encode_vocabulary(NAMES)
    enc.encode_vocabulary(['the cat on the left'], task='referring')  # raw: no context
    with torch.no_grad():
        enc.context_vectors.add_(0.5)
    enc.clear_cache()
    counter = count_tower(enc)
    enc.encode_vocabulary(['the cat on the left'], task='referring')
    assert counter.calls == 0  # raw prompts do not see the context: still a hit
    enc.encode_vocabulary(NAMES)
    assert counter.calls == 1  # class prompts do: recomputed


def test_misses_are_encoded_in_fp32_under_autocast(make_enc, tmp_path):
    reference = make_enc().eval().encode_vocabulary(NAMES)
    enc = make_enc(disk_cache_dir=str(tmp_path)).eval()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        emb = enc.encode_vocabulary(NAMES)
    assert emb.dtype == torch.float32 and torch.equal(emb, reference)


def _tamper_checksummed(path: str) -> None:
    """A loadable file whose embeddings no longer match its checksum."""
    data = torch.load(path, weights_only=True)
    data['embeds'] = data['embeds'] + 1e-3
    torch.save(data, path)


def _truncate(path: str) -> None:
    with open(path, 'rb') as f:
        raw = f.read()
    with open(path, 'wb') as f:
        f.write(raw[:len(raw) // 2])


@pytest.mark.parametrize('damage', [_truncate, _tamper_checksummed])
def test_corrupt_file_is_named_and_recomputed(make_enc, count_tower, tmp_path, damage):
    expected = make_enc(disk_cache_dir=str(tmp_path)).eval().encode_vocabulary(NAMES)
    [path] = _chunks(tmp_path)
    damage(path)
    enc = make_enc(disk_cache_dir=str(tmp_path)).eval()
    counter = count_tower(enc)
    with pytest.warns(UserWarning, match=f'corrupt file {path}'):
        emb = enc.encode_vocabulary(NAMES)
    assert counter.calls == 1 and torch.equal(emb, expected)
    # the recomputed chunk replaced the damaged file: a new process reads it silently
    assert _chunks(tmp_path) == [path]
    fresh = make_enc(disk_cache_dir=str(tmp_path)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert torch.equal(fresh.encode_vocabulary(NAMES), expected)
    assert fresh.tower_calls == 0


def test_large_vocabulary_is_one_file(make_enc, tmp_path):
    names = [f'thing number {i}' for i in range(300)]
    enc = make_enc(disk_cache_dir=str(tmp_path), chunk_size=256).eval()
    enc.encode_vocabulary(names)
    assert len(_chunks(tmp_path)) == 1


def test_chunks_are_merged_past_the_bound(tmp_path):
    cache = TextEmbeddingDiskCache(str(tmp_path), max_chunks=2)
    key = dict(arch='toy', weights='w')
    for i in range(3):
        cache.fetch_or_encode(key, [(f'e{i}', )], lambda todo, i=i: torch.full((1, 4), float(i)))
    assert len(_chunks(tmp_path)) == 1
    fresh = TextEmbeddingDiskCache(str(tmp_path))
    rows = fresh.fetch_or_encode(key, [('e2', ), ('e0', ), ('e1', )],
                                 lambda todo: pytest.fail(f'encoded {todo}'))
    assert rows[:, 0].tolist() == [2.0, 0.0, 1.0]


def _hammer(root: str, value: float, go: str) -> int:
    """Write one key 15 times with ``value`` and read it back in between; returns the number of
    reads that warned or missed (a torn file is reported, removed and re-encoded as -1)."""
    key = dict(arch='toy', weights='w')
    entries = [(f'entry {i}', ) for i in range(2000)]
    while not os.path.exists(go):
        time.sleep(0.002)
    bad = 0
    for _ in range(15):
        TextEmbeddingDiskCache(root).store(key, entries, torch.full((len(entries), 256), value))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            rows = TextEmbeddingDiskCache(root).fetch_or_encode(
                key, entries, lambda todo: torch.full((len(todo), 256), -1.0))
        bad += len(caught) + int(not bool((rows[:, 0] > 0).all()))
    return bad


def test_concurrent_writers_of_one_key_leave_a_valid_file(tmp_path):
    """Two processes write the same chunk (different values, as two machines' nondeterministic
    encodings would) 15 times each and read it back in between: no reader ever sees a torn
    file, and the final file is entirely one writer's."""
    go, root = str(tmp_path / 'go'), str(tmp_path / 'cache')
    threading.Timer(0.5, lambda: open(go, 'w').close()).start()
    assert _in_processes(_hammer, [(root, 1.0, go), (root, 2.0, go)]) == [0, 0]
    [path] = _chunks(root)
    assert not [n for n in os.listdir(osp.dirname(path)) if '.tmp-' in n]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        rows = TextEmbeddingDiskCache(root).fetch_or_encode(
            dict(arch='toy', weights='w'), [(f'entry {i}', ) for i in range(2000)],
            lambda todo: pytest.fail('miss'))
    assert rows.unique().numel() == 1 and float(rows[0, 0]) in (1.0, 2.0)
