"""Prompt templates, synonyms and the per-task prompt rules of the text encoder.

Class names become prompts through a template set and are ensembled (paper section 3.3 uses a CLIP
text encoder as the classifier; CLIP's prompt ensembling: normalise each template's embedding,
average, renormalise). Referring expressions are encoded raw. UniLSeg (table 1) prompts
category-based tasks with ``"all {}"`` and salient-object (foreground) data with
``"the most salient object"``.

Synonym rule (documented here, applied by :class:`OpenCLIPTextEncoder`): a vocabulary entry may
name several synonyms, either as a list/tuple of strings (LVIS ``synonyms``) or as one string joined
by a separator (``"person/people"``). Each synonym is ensembled over the templates on its own
(normalise, average, renormalise); the entry's embedding is the renormalised mean of its synonyms'
embeddings, so every synonym weighs the same whatever its number of templates or tokens.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmquerymeld.utils.text import clean_class_name  # noqa: F401  (re-exported)

#: The prompt UniLSeg (table 1) uses for salient object / foreground segmentation.
FOREGROUND_PROMPT = 'the most salient object'

#: Photo-style templates for class names (a compact subset in the spirit of CLIP's ImageNet set).
PHOTO_TEMPLATES: Tuple[str, ...] = (
    'a photo of a {}.',
    'a photo of the {}.',
    'a photo of a small {}.',
    'a photo of a large {}.',
    'a cropped photo of a {}.',
    'a close-up photo of the {}.',
    'a bright photo of a {}.',
    'a dark photo of the {}.',
    'a blurry photo of a {}.',
    'a good photo of the {}.',
    'there is a {} in the scene.',
    'there is the {} in the scene.',
    'this is a {} in the scene.',
    'a photo of {} in the scene.',
)

#: Named template sets; a template holds exactly one ``{}`` that the class name replaces.
TEMPLATE_SETS: Dict[str, Tuple[str, ...]] = {
    'photo': PHOTO_TEMPLATES,
    'simple': ('a photo of a {}.', ),
    'all': ('all {}', ),  # UniLSeg, table 1: semantic / open-vocabulary segmentation
    'name': ('{}', ),  # the class name alone
    'raw': ('{}', ),  # the text as given (referring expressions, foreground prompts)
}

#: Task -> template-set name used unless the classifier's ``task_templates`` says otherwise.
#: Tasks not listed here use the classifier's ``templates`` argument.
DEFAULT_TASK_TEMPLATES: Dict[str, str] = {
    'referring': 'raw',
    'foreground': 'raw',
}

#: Template sets whose texts are full sentences: no name cleaning, no synonym splitting.
RAW_TEMPLATE_SETS = ('raw', )

TemplateSpec = Union[str, Sequence[str]]
VocabEntry = Union[str, Sequence[str]]


def resolve_templates(spec: TemplateSpec, where: str = 'templates') -> Tuple[str, ...]:
    """Turn a template-set name or a list of templates into a validated tuple of templates.

    Args:
        spec: A name in :data:`TEMPLATE_SETS` (``'photo'``, ``'simple'``, ``'all'``, ``'name'``,
            ``'raw'``) or a sequence of format strings, each with exactly one ``{}``.
        where: Name of the argument/field being resolved, used in error messages.

    Returns:
        The templates, as a tuple (hashable: it is part of the embedding-cache key).

    Raises:
        KeyError: Unknown set name.
        ValueError: Empty set, or a template without exactly one ``{}``.
    """
    if isinstance(spec, str):
        if spec not in TEMPLATE_SETS:
            raise KeyError(f'{where}: unknown template set {spec!r}; known sets: '
                           f'{sorted(TEMPLATE_SETS)}, or pass a list of templates with one "{{}}"')
        return TEMPLATE_SETS[spec]
    templates = tuple(spec)
    if not templates:
        raise ValueError(f'{where}: the template list is empty')
    for template in templates:
        if not isinstance(template, str) or template.count('{}') != 1:
            raise ValueError(f'{where}: every template must be a string with exactly one "{{}}", '
                             f'got {template!r}')
    return templates


def split_synonyms(entry: VocabEntry, sep: Optional[str] = '/', clean: bool = True,
                   where: str = 'texts') -> Tuple[str, ...]:
    """Split one vocabulary entry into its synonyms (see the module docstring for the rule).

    Args:
        entry: A class name (``'person/people'``) or a sequence of synonyms
            (``['aerosol_can', 'spray_can']``).
        sep: Separator between synonyms inside a string; ``None`` disables splitting.
        clean: Apply :func:`clean_class_name` to every synonym.
        where: Name of the field being parsed, used in error messages.

    Returns:
        The synonyms, deduplicated in order of first appearance.

    Raises:
        TypeError: The entry is neither a string nor a sequence of strings.
        ValueError: The entry names no non-empty synonym.
    """
    if isinstance(entry, str):
        parts: Sequence[str] = entry.split(sep) if sep else [entry]
    elif isinstance(entry, (list, tuple)) and all(isinstance(p, str) for p in entry):
        parts = entry
    else:
        raise TypeError(f'{where}: a vocabulary entry must be a string or a list of strings, '
                        f'got {type(entry).__name__}: {entry!r}')
    synonyms: List[str] = []
    for part in parts:
        part = clean_class_name(part) if clean else part.strip()
        if part and part not in synonyms:
            synonyms.append(part)
    if not synonyms:
        raise ValueError(f'{where}: empty vocabulary entry {entry!r}')
    return tuple(synonyms)


def raw_text(entry: VocabEntry, where: str = 'texts') -> str:
    """Validate a raw text (referring expression or foreground prompt).

    Args:
        entry: The sentence.
        where: Name of the field, used in error messages.

    Returns:
        The sentence with surrounding whitespace removed.

    Raises:
        TypeError: Not a string.
        ValueError: Empty string.
    """
    if not isinstance(entry, str):
        raise TypeError(f'{where}: a raw text must be a string, got {type(entry).__name__}: '
                        f'{entry!r}')
    text = entry.strip()
    if not text:
        raise ValueError(f'{where}: empty text')
    return text


def fill_templates(synonym: str, templates: Sequence[str]) -> List[str]:
    """Format one class name into every template.

    Args:
        synonym: The class name.
        templates: Format strings with one ``{}``.

    Returns:
        ``len(templates)`` prompts.
    """
    return [template.format(synonym) for template in templates]
