"""The one class-name cleaner shared by the pipeline, the text encoder and the metrics."""
import pytest

from mmquerymeld.utils import clean_class_name


@pytest.mark.parametrize('name, expected', [
    ('traffic_light', 'traffic light'),  # LVIS / COCO underscores
    ('aerosol_can', 'aerosol can'),
    ('  bow_(weapon) ', 'bow (weapon)'),
    ('wall-other-merged', 'wall'),  # COCO panoptic suffixes
    ('tree-merged', 'tree'),
    ('bed ', 'bed'),  # mmseg's ADE20K names carry trailing spaces
    ('a  b\tc', 'a b c'),  # white space collapsed
    ('person', 'person'),
])
def test_clean_class_name_examples(name, expected):
    assert clean_class_name(name) == expected


def test_one_implementation_for_every_caller():
    from mmquerymeld.datasets import utils as data_utils
    from mmquerymeld.evaluation.metrics import sample_utils
    from mmquerymeld.models import text
    from mmquerymeld.models.text import templates
    for module in (data_utils, sample_utils, text, templates):
        assert module.clean_class_name is clean_class_name, module.__name__


def _pipeline_rule_before(name: str) -> str:
    """The data pipeline's rule before the two copies were merged (datasets/utils.py)."""
    return name.replace('_', ' ').replace('-other', '').replace('-merged', '').strip()


def _vocabularies():
    from mmdet.datasets import CocoDataset, CocoPanopticDataset, LVISV1Dataset
    from mmseg.datasets import ADE20KDataset, PascalContextDataset59
    pano = CocoPanopticDataset.METAINFO
    return {'coco': CocoDataset.METAINFO['classes'],
            'coco_panoptic': tuple(pano['thing_classes']) + tuple(pano['stuff_classes']),
            'lvis': LVISV1Dataset.METAINFO['classes'],
            'ade20k': ADE20KDataset.METAINFO['classes'],
            'pascal_context_59': PascalContextDataset59.METAINFO['classes']}


def test_dataset_vocabularies_clean_as_before():
    """The merge changed no name of the public vocabularies that the pipeline and metrics see."""
    vocabs = _vocabularies()
    assert any('-merged' in n for n in vocabs['coco_panoptic'])
    for vocab, names in vocabs.items():
        for name in names:
            assert clean_class_name(name) == _pipeline_rule_before(name), (vocab, name)
