"""ResumableIterBasedTrainLoop + TrainStateHook + AtomicCheckpointHook on mmengine's Runner:
a crashed run resumes to the uninterrupted run's weights without replaying its data."""
import pytest
import torch

import mmquerymeld  # noqa: F401  (registers the loop and hooks)
from toy_runner import RecordHook, build_runner, make_dataset


def _weights(runner):
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def _train(tmp_path, name, crash_at=None, resume=False, **kwargs):
    hook = RecordHook(crash_at)
    runner = build_runner(str(tmp_path / 'work' if resume or crash_at else tmp_path / name),
                          make_dataset(), hook, resume=resume, name=name, **kwargs)
    try:
        runner.train()
    except KeyboardInterrupt:
        pass
    # the Runner deep-copies its dataloader config: count the loads of the loader's dataset
    return runner, hook, runner.train_loop.dataloader.dataset


# mid-epoch / after an epoch boundary (4 batches an epoch); with a loader worker, whose RNG
# stream restarts on resume: only the per-sample seeds keep the augmentation identical
@pytest.mark.parametrize('crash_at,workers', [(5, 0), (8, 0), (5, 1)])
def test_resume_matches_uninterrupted_run_without_replay(tmp_path, crash_at, workers):
    ref, ref_hook, _ = _train(tmp_path, 'ref', num_workers=workers)
    _train(tmp_path, 'first', crash_at=crash_at, num_workers=workers)  # checkpoints every 2
    last = (crash_at - 1) // 2 * 2  # the crash comes before that iteration's checkpoint
    resumed, hook, data = _train(tmp_path, 'second', resume=True, num_workers=workers)
    # same weights, bit for bit, as the run that was never interrupted
    for k, v in _weights(ref).items():
        assert torch.equal(_weights(resumed)[k], v), k
    # the same samples at every resumed iteration, none replayed
    assert sorted(hook.order) == list(range(last + 1, 11))
    assert all(hook.order[k] == ref_hook.order[k] for k in hook.order)
    if workers == 0:  # the loads are counted in this process
        loads = sum(d.loads for d in data.datasets)
        # exactly the samples of the batches trained after the resume (epochs end on 2)
        assert loads == sum(len(ref_hook.order[k]) for k in range(last + 1, 11)), loads
    assert resumed.train_loop.dataloader_iterator.fetched == 10 - last


def test_mmengine_loop_replays_and_drifts(tmp_path):
    """What the project loop fixes: mmengine's IterBasedTrainLoop replays every finished batch."""
    _train(tmp_path, 'first', crash_at=5, loop='IterBasedTrainLoop')
    _, _, data = _train(tmp_path, 'second', resume=True, loop='IterBasedTrainLoop')
    # the 4 finished batches are loaded again before the 6 trained ones
    assert sum(d.loads for d in data.datasets) == 3 + 3 + 3 + 2 + 3 + 3 + 3 + 2 + 3 + 3


def test_checkpoint_holds_rng_and_data_position(tmp_path):
    _train(tmp_path, 'first', crash_at=5)
    ckpt = torch.load(str(tmp_path / 'work' / 'iter_4.pth'))  # weights_only default
    assert ckpt['data_position'] == dict(epoch=0, batches=4)  # 4 batches: all of epoch 0
    assert set(ckpt['rng_state']) >= {'python', 'numpy', 'torch'}
    assert open(tmp_path / 'work' / 'last_checkpoint').read().endswith('iter_4.pth')
