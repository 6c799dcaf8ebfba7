"""OpenCLIPTextEncoder without pretrained weights: a frozen random tower is announced; a missing
file or an unreachable tag fails naming the config key."""
import logging
from contextlib import contextmanager
from typing import Iterator, List

import pytest
from mmengine.logging import MMLogger

KEY = 'model.head.text_encoder.pretrained'


@contextmanager
def captured_warnings() -> Iterator[List[str]]:
    """Messages logged at WARNING or above through mmengine's current logger."""
    records: List[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Catch()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _void_claim(records: List[str]) -> List[str]:
    return [r for r in records if 'RANDOM weights' in r and 'open-vocabulary claim' in r]


def test_frozen_random_tower_logs_what_it_means(make_enc):
    with captured_warnings() as records:
        make_enc(pretrained=None, freeze_tower=True)
    assert len(_void_claim(records)) == 1, records
    assert 'QM-Tiny' in _void_claim(records)[0]


@pytest.mark.parametrize('kwargs', [dict(), dict(pretrained=None, freeze_tower=False)],
                         ids=['pretrained', 'trainable-tower'])
def test_no_warning_with_weights_or_a_trainable_tower(make_enc, kwargs):
    with captured_warnings() as records:
        make_enc(**kwargs)
    assert _void_claim(records) == []


def test_missing_file_names_the_config_key(make_enc, tmp_path):
    with pytest.raises(FileNotFoundError, match=KEY):
        make_enc(pretrained=str(tmp_path / 'missing.pt'))


def test_unknown_tag_names_the_config_key(make_enc):
    """(An unreachable tag of a real architecture: tests/test_configs/test_pretrained_starts.py.)"""
    with pytest.raises(FileNotFoundError, match=f'is neither a file nor an open_clip tag.*{KEY}'):
        make_enc(pretrained='openai')  # not a tag of QM-Tiny


def test_quick_gelu_mismatch_of_openai_weights():
    """OpenAI's CLIP weights need the QuickGELU architecture (the paper configs use it)."""
    from mmquerymeld.models.text.pretrained_hints import quick_gelu_mismatch
    assert quick_gelu_mismatch('ViT-B-16', 'openai')
    assert not quick_gelu_mismatch('ViT-B-16-quickgelu', 'openai')
    assert not quick_gelu_mismatch('ViT-B-16', 'laion2b_s34b_b88k')
