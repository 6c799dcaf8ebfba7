"""Tiny real models for the caption tools' tests, random weights written to disk.

``write_tiny_blip``: transformers' ``BlipForConditionalGeneration`` at width 32 (one vision and one
text layer, 32 px images) with a ``BlipProcessor`` (``BlipImageProcessor`` + a ``BertTokenizer``
whose vocabulary file is written here), saved with ``save_pretrained`` into one directory, as a
downloaded BLIP snapshot is. ``write_qm_tiny_clip``: the project's ``QM-Tiny`` open_clip model.
"""
import os
import os.path as osp
import subprocess
import sys
from typing import List, Sequence

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
WORDS = ('a the red green blue yellow circle square triangle star cross on left right of small '
         'large shape near top bottom picture').split()


def write_tiny_blip(out_dir: str, seed: int = 0) -> str:
    """Save a random-weight BLIP captioner + processor (tokenizer vocabulary written here).

    BLIP's vision config initialises with std 1e-10 (a trained checkpoint overwrites it); at that
    scale every crop gets the same captions, so the vision tower is initialised with std 0.1.
    """
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration,
                              BlipImageProcessor, BlipProcessor)
    os.makedirs(out_dir, exist_ok=True)
    vocab = osp.join(out_dir, 'vocab.txt')
    with open(vocab, 'w', encoding='utf-8') as f:
        f.write('\n'.join(SPECIALS + WORDS) + '\n')
    tokenizer = BertTokenizer(vocab)
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={'height': 32, 'width': 32}), tokenizer=tokenizer)
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(SPECIALS) + len(WORDS), hidden_size=32,
                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=40, encoder_hidden_size=32, pad_token_id=0,
                         bos_token_id=2, sep_token_id=3, eos_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=16,
                           initializer_range=0.1),
        projection_dim=32)
    torch.manual_seed(seed)
    BlipForConditionalGeneration(cfg).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def write_qm_tiny_clip(path: str, seed: int = 0) -> str:
    """Save the random-weight ``QM-Tiny`` open_clip model's state dict to ``path``."""
    import open_clip
    import torch

    from mmquerymeld.models.text.open_clip_utils import register_tiny_model
    register_tiny_model()
    torch.manual_seed(seed)
    model = open_clip.create_model('QM-Tiny', pretrained=None, load_weights=False)
    torch.save(model.state_dict(), path)
    return path


def run_tool(name: str, args: Sequence[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``tools/dataset_converters/<name>.py`` in a fresh single-threaded interpreter."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))
    tool = osp.join(REPO, 'tools', 'dataset_converters', f'{name}.py')
    proc = subprocess.run([sys.executable, tool, *args, '--no-progress'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def summary_line(proc: subprocess.CompletedProcess) -> dict:
    """The JSON summary a tool prints as its last stdout line."""
    import json
    lines: List[str] = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
    return json.loads(lines[-1])
