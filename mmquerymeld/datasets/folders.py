"""Folder datasets: foreground / salient (image + binary mask) and semantic label maps."""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

from mmdet.registry import DATASETS
from mmengine.dataset import BaseDataset
from mmseg.datasets import BaseSegDataset

from .utils import require_dir, require_file

#: Folder layouts of the public foreground datasets: layout -> split -> (image dir, mask dir).
SALIENT_LAYOUTS: Dict[str, Dict[str, Tuple[str, str]]] = {
    'DUTS': {'train': ('DUTS-TR/DUTS-TR-Image', 'DUTS-TR/DUTS-TR-Mask'),
             'test': ('DUTS-TE/DUTS-TE-Image', 'DUTS-TE/DUTS-TE-Mask')},
    'DIS5K': {'train': ('DIS-TR/im', 'DIS-TR/gt'), 'val': ('DIS-VD/im', 'DIS-VD/gt'),
              **{f'test{i}': (f'DIS-TE{i}/im', f'DIS-TE{i}/gt') for i in range(1, 5)}},
    'HRSOD': {'train': ('HRSOD_train', 'HRSOD_train_mask'),
              'test': ('HRSOD_test', 'HRSOD_test_mask')},
}
_IMG_EXT = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')


def salient_dirs(layout: str, split: str) -> Tuple[str, str]:
    """(image dir, mask dir) of a layout's split; ``val`` falls back to ``test``."""
    if layout not in SALIENT_LAYOUTS:
        raise ValueError(f'unknown salient layout {layout!r}; known: {list(SALIENT_LAYOUTS)}')
    splits = SALIENT_LAYOUTS[layout]
    if split not in splits and split == 'val' and 'test' in splits:
        split = 'test'
    if split not in splits:
        raise ValueError(f'layout {layout!r} has no split {split!r}; known: {list(splits)}')
    return splits[split]


@DATASETS.register_module()
class SalientFolderDataset(BaseDataset):
    """Foreground / salient object segmentation: an image folder and a binary-mask folder.

    Images and masks pair by file stem. Read the masks with
    ``LoadSemSegAnnotations(binarize=True)``.

    Args:
        layout: ``'DUTS'``, ``'DIS5K'`` or ``'HRSOD'`` (folder presets), or None with
            ``data_prefix=dict(img_path=..., seg_map_path=...)``.
        split: split of the layout (``train``, ``val``/``test``, DIS5K ``test1``..``test4``).
        mask_suffix: mask file extension.
        **kwargs: mmengine ``BaseDataset`` arguments (``data_root``, ``metainfo`` ...).
    """

    METAINFO = dict(classes=('foreground', ))

    def __init__(self, layout: Optional[str] = None, split: str = 'train',
                 mask_suffix: str = '.png', data_prefix: Optional[dict] = None,
                 **kwargs) -> None:
        if layout is not None:
            img_dir, mask_dir = salient_dirs(layout, split)
            data_prefix = dict(img_path=img_dir, seg_map_path=mask_dir)
        elif not data_prefix or 'img_path' not in data_prefix or 'seg_map_path' not in data_prefix:
            raise ValueError('SalientFolderDataset needs a layout or data_prefix with '
                             '"img_path" and "seg_map_path"')
        self.layout, self.split, self.mask_suffix = layout, split, mask_suffix
        super().__init__(data_prefix=data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        img_dir, mask_dir = self.data_prefix['img_path'], self.data_prefix['seg_map_path']
        require_dir(img_dir, 'image folder', type(self).__name__)
        require_dir(mask_dir, 'mask folder', type(self).__name__)
        masks = {osp.splitext(f)[0]: f for f in os.listdir(mask_dir)
                 if f.lower().endswith(self.mask_suffix)}
        data_list = []
        for name in sorted(os.listdir(img_dir)):
            stem, ext = osp.splitext(name)
            if ext.lower() not in _IMG_EXT:
                continue
            if stem not in masks:
                raise FileNotFoundError(f'{type(self).__name__}: mask for {name} not found: '
                                        f'{osp.join(mask_dir, stem + self.mask_suffix)}')
            data_list.append(dict(img_path=osp.join(img_dir, name),
                                  seg_map_path=osp.join(mask_dir, masks[stem]), img_id=stem))
        if not data_list:
            raise ValueError(f'{type(self).__name__}: no image in {img_dir}')
        return data_list


@DATASETS.register_module()
class SemSegFolderDataset(BaseSegDataset):
    """Semantic label-map folders (mmseg layout) with classes given in ``metainfo``.

    mmseg's ``BaseSegDataset`` plus an ``img_id`` per sample, a clear error when a folder is
    missing, and any number of classes (pair it with :class:`LoadSemSegAnnotations`, which keeps
    16-bit maps; ``metainfo['ignore_index']`` tells the maps' ignore value).

    Args:
        classes_file: text file with one class name per line (relative to ``data_root``),
            instead of ``metainfo=dict(classes=...)``.
        **kwargs: mmseg ``BaseSegDataset`` arguments (``data_prefix=dict(img_path=...,
            seg_map_path=...)``, ``img_suffix``, ``seg_map_suffix``, ``reduce_zero_label``,
            ``metainfo=dict(classes=...)``).
    """

    METAINFO: dict = {}

    def __init__(self, classes_file: Optional[str] = None, **kwargs) -> None:
        metainfo = dict(kwargs.get('metainfo') or {})
        if classes_file is not None:
            root = kwargs.get('data_root') or ''
            path = classes_file if osp.isabs(classes_file) else osp.join(root, classes_file)
            require_file(path, 'classes file', type(self).__name__)
            with open(path) as f:
                metainfo['classes'] = tuple(line.strip() for line in f if line.strip())
            kwargs['metainfo'] = metainfo
        if not metainfo.get('classes'):
            raise ValueError('SemSegFolderDataset needs metainfo=dict(classes=[...]) or '
                             'classes_file')
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        if not self.ann_file:
            require_dir(self.data_prefix.get('img_path', ''), 'image folder',
                        type(self).__name__)
        require_dir(self.data_prefix.get('seg_map_path', ''), 'label-map folder',
                    type(self).__name__)
        data_list = super().load_data_list()
        for info in data_list:
            info['img_id'] = osp.splitext(osp.basename(info['img_path']))[0]
        return data_list
