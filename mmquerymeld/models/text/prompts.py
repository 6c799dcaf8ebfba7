"""Per-task prompt rules: which template set a task uses, synonyms, and the prompt list to encode.

The templates and the synonym rule themselves live in :mod:`.templates`; this module decides, per
call of the text encoder, which of them apply (CLIP prompt ensembling; UniLSeg table 1 prompts;
LMSeg section 3.2 CoOp context replacing hand-made templates).
"""
from typing import Dict, List, Optional, Sequence, Tuple

from mmquerymeld.utils import TASKS
from .templates import (DEFAULT_TASK_TEMPLATES, RAW_TEMPLATE_SETS, TemplateSpec, VocabEntry,
                        fill_templates, raw_text, resolve_templates, split_synonyms)

#: ``(templates, raw, uses_context)``: how a vocabulary is turned into prompts.
PromptRule = Tuple[Tuple[str, ...], bool, bool]


class PromptRules:
    """Template sets per task and the synonym rule, validated at construction.

    Args:
        templates: Template set for class-name tasks not in ``task_templates``: a name
            (``'photo'``, ``'simple'``, ``'all'``, ``'name'``, ``'raw'``) or a list of templates.
        task_templates: Per-task override, merged over :data:`DEFAULT_TASK_TEMPLATES`.
        synonym_sep: Separator between synonyms inside a class name; None disables splitting.
        clean_names: Replace underscores by spaces in class names.

    Raises:
        KeyError: ``task_templates`` names an unknown task, or a template set is unknown.
    """

    def __init__(self, templates: TemplateSpec = 'photo',
                 task_templates: Optional[Dict[str, TemplateSpec]] = None,
                 synonym_sep: Optional[str] = '/', clean_names: bool = True) -> None:
        self.synonym_sep = synonym_sep
        self.clean_names = clean_names
        self.default_templates = resolve_templates(templates, 'templates')
        self.default_is_raw = isinstance(templates, str) and templates in RAW_TEMPLATE_SETS
        specs: Dict[str, TemplateSpec] = dict(DEFAULT_TASK_TEMPLATES)
        for task, spec in (task_templates or {}).items():
            if task not in TASKS:
                raise KeyError(f'task_templates: unknown task {task!r}; tasks: {TASKS}')
            specs[task] = spec
        self.task_templates: Dict[str, Tuple[Tuple[str, ...], bool]] = {
            task: (resolve_templates(spec, f'task_templates[{task!r}]'),
                   isinstance(spec, str) and spec in RAW_TEMPLATE_SETS)
            for task, spec in specs.items()
        }

    def rule(self, task: str, templates: Optional[TemplateSpec] = None,
             has_context: bool = False) -> PromptRule:
        """The prompt rule of a task.

        Args:
            task: One of :data:`mmquerymeld.utils.TASKS`.
            templates: Override of the task's template set for one call.
            has_context: The encoder has CoOp context vectors: non-raw prompts become
                ``"[v]_1 ... [v]_L name."`` instead of the templates.

        Returns:
            ``(templates, raw, uses_context)``.

        Raises:
            KeyError: Unknown task.
        """
        if task not in TASKS:
            raise KeyError(f'task: unknown task {task!r}; tasks: {TASKS}')
        if templates is not None:
            temps = resolve_templates(templates, 'templates')
            raw = isinstance(templates, str) and templates in RAW_TEMPLATE_SETS
        elif task in self.task_templates:
            temps, raw = self.task_templates[task]
        else:
            temps, raw = self.default_templates, self.default_is_raw
        uses_context = has_context and not raw
        if uses_context:
            temps = ('{}.', )  # CoOp: "[v]_1 ... [v]_L name." replaces hand-made templates
        return temps, raw, uses_context

    def synonyms(self, entry: VocabEntry, raw: bool, index: int) -> Tuple[str, ...]:
        """The synonyms of a vocabulary entry (one sentence for raw texts).

        Raises:
            TypeError: The entry is neither a string nor a sequence of strings (names
                ``texts[index]``).
        """
        where = f'texts[{index}]'
        if raw:
            return (raw_text(entry, where), )
        return split_synonyms(entry, self.synonym_sep, self.clean_names, where)


def build_prompts(entries: Sequence[Tuple[str, ...]], templates: Sequence[str],
                  raw: bool) -> Tuple[List[str], List[int], List[int]]:
    """Expand entries into prompts, sorted by length (so that similar lengths share a chunk).

    Args:
        entries: E tuples of synonyms.
        templates: Template set (ignored when ``raw``).
        raw: Each synonym is its own prompt.

    Returns:
        ``(prompts, prompt_synonym, synonym_entry)``: P prompts, the synonym index of each
        prompt, and the entry index of each of the S synonyms.
    """
    prompts: List[str] = []
    prompt_syn: List[int] = []
    syn_entry: List[int] = []
    for e, synonyms in enumerate(entries):
        for synonym in synonyms:
            for prompt in ([synonym] if raw else fill_templates(synonym, templates)):
                prompts.append(prompt)
                prompt_syn.append(len(syn_entry))
            syn_entry.append(e)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    return [prompts[i] for i in order], [prompt_syn[i] for i in order], syn_entry
