"""Text helpers shared by the data pipeline, the text encoder and the metrics."""

#: Suffixes of COCO panoptic class names that are annotation artefacts, not words
#: (``'wall-other-merged'``); removed in this order.
COCO_NAME_SUFFIXES = ('-other', '-merged')


def clean_class_name(name: str) -> str:
    """Turn a dataset class name into prompt text.

    Underscores become spaces (LVIS ``'aerosol_can'`` -> ``'aerosol can'``), COCO panoptic's
    ``-other`` / ``-merged`` suffixes go (``'wall-other-merged'`` -> ``'wall'``) and white space
    is collapsed and stripped (mmseg's ADE20K ``'bed '`` -> ``'bed'``). The pipeline
    (``ToUnifiedTargets(clean_names=True)``), the text encoder's synonym splitting and the
    metrics' text -> class lookup all use this one function, so their names agree.

    Args:
        name: Raw class name.

    Returns:
        The cleaned name.
    """
    name = name.replace('_', ' ')
    for suffix in COCO_NAME_SUFFIXES:
        name = name.replace(suffix, '')
    return ' '.join(name.split())
