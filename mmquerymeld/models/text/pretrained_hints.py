"""Messages for text-tower weights: what to download and which config key to point at it."""
from typing import Optional

import open_clip

#: Where the paper configs keep the text tower's weights (``--cfg-options`` key).
TEXT_PRETRAINED_KEY = 'model.head.text_encoder.pretrained'


def text_tower_download_hint(model_name: str, pretrained: str,
                             key: str = TEXT_PRETRAINED_KEY) -> str:
    """Tell the user which file to fetch for an open_clip tag and which key to set.

    Args:
        model_name: open_clip architecture, e.g. ``'ViT-B-16-quickgelu'``.
        pretrained: The tag (``'openai'``) or the path that was asked for.
        key: The config key holding ``pretrained``.

    Returns:
        One or two sentences: the URL / Hugging Face file of the tag (when it is a known tag), and
        ``set <key>=/path/to/<file>``.
    """
    name = model_name.replace('/', '-')
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
    sources = []
    filename: Optional[str] = None
    if tag_cfg.get('url'):
        sources.append(tag_cfg['url'])
        filename = tag_cfg['url'].rstrip('/').split('/')[-1]
    if tag_cfg.get('hf_hub'):
        hf_file = tag_cfg.get('hf_filename', 'open_clip_pytorch_model.bin')
        sources.append(f"{hf_file} of the Hugging Face repo {tag_cfg['hf_hub'].rstrip('/')}")
        filename = filename or hf_file
    if not sources:
        return (f'set {key}=/path/to/<open_clip checkpoint of {name}> (a local file; tags of '
                f'{name}: {open_clip.list_pretrained_tags_by_model(name)})')
    return (f'download {" or ".join(sources)} on a machine with network access, then set '
            f'{key}=/path/to/{filename} (e.g. --cfg-options {key}=/data/weights/{filename}); a '
            'local file is never downloaded again')


def random_frozen_tower_warning(model_name: str) -> str:
    """Warning for a frozen text tower that kept its random initialisation."""
    return (f'OpenCLIPTextEncoder: the {model_name} text tower is frozen with RANDOM weights '
            '(pretrained=None). Its embeddings are fixed random functions of the tokens: class '
            'names carry no meaning beyond the training vocabulary, so the open-vocabulary claim '
            'is void (fine for tests and the tiny demo). For real training set pretrained to an '
            "open_clip tag (e.g. 'openai' with model_name='ViT-B-16-quickgelu') or a local "
            'checkpoint file.')


def quick_gelu_mismatch(model_name: str, tag: str) -> bool:
    """Whether an open_clip tag was trained with QuickGELU but the architecture uses GELU.

    (OpenAI's CLIP weights: ``'ViT-B-16'`` + ``'openai'`` loads but computes the wrong activation;
    ``'ViT-B-16-quickgelu'`` is the matching architecture.)
    """
    name = model_name.replace('/', '-')
    tag_cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    model_cfg = open_clip.get_model_config(name) or {}
    return bool(tag_cfg.get('quick_gelu')) and not model_cfg.get('quick_gelu', False)
