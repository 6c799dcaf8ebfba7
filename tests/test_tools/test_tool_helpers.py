"""Small helpers of tools/test.py and the WeightsOnlyCheckpointHook round trip."""
import importlib.util
import json
import os.path as osp
from collections import OrderedDict

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from mmquerymeld.engine.hooks import WeightsOnlyCheckpointHook

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'qm_tool_{name}',
                                                  osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metrics_out_accepts_arrays_strings_and_tensors(tmp_path):
    tool = _load_tool('test')
    metrics = {'src/PQ': np.float64(28.7), 'src/per_class': np.array([0.5, 0.25]),
               'coco/bbox_mAP_copypaste': '0.1 0.2', 'n': np.int64(3),
               'iou': torch.tensor([1.0, 0.5]), 'plain': 1.5}
    path = tmp_path / 'sub' / 'metrics.json'
    tool.write_metrics(metrics, str(path))
    assert json.loads(path.read_text()) == {
        'src/PQ': 28.7, 'src/per_class': [0.5, 0.25], 'coco/bbox_mAP_copypaste': '0.1 0.2',
        'n': 3, 'iou': [1.0, 0.5], 'plain': 1.5}
    assert not osp.exists(str(path) + '.tmp')


def test_message_hub_round_trip_through_weights_only_load(tmp_path):
    """Saved with the hook, loaded by torch's default (weights_only) loader, restored: the
    message hub continues with the same histories, statistics, counts and runtime info."""
    hub = MessageHub.get_instance('qm_hub_round_trip_src')
    for i in range(7):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
        hub.update_scalar('train/lr', np.float32(0.01), count=2)
    hub.update_info('iter', 7)
    hub.update_info('eta', np.float64(12.5))
    checkpoint = {'meta': {'seed': np.int64(0), 'dataset_meta': OrderedDict(a=np.arange(2))},
                  'message_hub': hub.state_dict()}
    hook = WeightsOnlyCheckpointHook()
    hook.before_save_checkpoint(None, checkpoint)
    # the live hub is untouched by saving
    assert isinstance(hub.get_scalar('train/loss'), HistoryBuffer)
    path = tmp_path / 'ckpt.pth'
    torch.save(checkpoint, str(path))
    loaded = torch.load(str(path), map_location='cpu')  # weights_only=True default
    hook.after_load_checkpoint(None, loaded)
    restored = MessageHub.get_instance('qm_hub_round_trip_dst')
    restored.load_state_dict(loaded['message_hub'])
    for key in ('train/loss', 'train/lr'):
        old, new = hub.get_scalar(key), restored.get_scalar(key)
        assert np.allclose(old.data[0], new.data[0]) and np.array_equal(old.data[1], new.data[1])
        assert new.mean(5) == old.mean(5) and new.current() == old.current()
        assert new.max_length == old.max_length
    assert restored.get_info('iter') == 7 and restored.get_info('eta') == 12.5
    assert loaded['meta']['seed'] == 0 and loaded['meta']['dataset_meta']['a'] == [0, 1]
    # logging continues where it stopped
    restored.update_scalar('train/loss', 0.1)
    assert len(restored.get_scalar('train/loss').data[0]) == 8
