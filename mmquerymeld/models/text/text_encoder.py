"""The open-vocabulary text encoder: vocabularies -> unit-norm CLIP text embeddings (open_clip).

Paper section 3.3: class names and referring expressions are both text, embedded by a CLIP text
encoder. LMSeg sections 3.2-3.3: the CLIP text tower stays frozen, optionally with learnable CoOp
context vectors shared across datasets. The query-side classifier that scores decoder queries
against these embeddings is :class:`~.text_classifier.QueryTextClassifier`.
"""
import logging
import warnings
from typing import Dict, Hashable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mmdet.registry import MODELS
from .coop import (can_trim_padding, check_context_support, context_prefix, encode_text_tokens,
                   supports_token_forward)
from .disk_cache import (FORMAT_VERSION, TensorsFingerprint, TextEmbeddingDiskCache,
                         resolve_disk_cache_dir)
from .embedding_cache import TextEmbeddingCache
from .open_clip_utils import (build_text_tower, get_tokenizer, load_text_tower_weights,
                              resolve_pretrained, text_embed_dim, tokenize)
from .pretrained_hints import (quick_gelu_mismatch, random_frozen_tower_warning,
                               text_tower_download_hint)
from .prompts import PromptRule, PromptRules, build_prompts
from .templates import TemplateSpec, VocabEntry

@MODELS.register_module()
class OpenCLIPTextEncoder(BaseModule):
    """Any open_clip text tower, with prompts, synonyms, a cache and optional CoOp context.

    Prompt rules per task (see :mod:`.templates`): class-name tasks (semantic, instance,
    panoptic, detection by default) are cleaned (``'_'`` -> ``' '``), split into synonyms and
    ensembled over a template set; ``referring`` and ``foreground`` texts are encoded as given
    (template set ``'raw'``). Over-long texts are truncated to the context length with a warning.

    Caching: embeddings are cached per (prompt rule, vocabulary entry), detached, on the module's
    device (:class:`TextEmbeddingCache`); a fixed vocabulary runs the text tower once per
    process and module. With a trainable text path (``freeze_tower=False`` or
    ``num_context_tokens > 0``) the cache is bypassed in training mode and cleared whenever the
    train/eval mode is set; any ``load_state_dict`` also clears it.

    Disk cache (off by default): ``disk_cache_dir='/path'`` in the config, or the environment
    variable ``MMQM_TEXT_CACHE_DIR=/path`` when the config leaves it None, keeps the embeddings of
    every encoded vocabulary on disk (:class:`~.disk_cache.TextEmbeddingDiskCache`), so the next
    process with the same vocabulary (LVIS' 1203 names x 14 templates) skips the text tower. Files
    are keyed by ``model_name``, a SHA-256 of the tower's weights (hashed once per process and
    again only when a weight changes; with CoOp context in the prompts, of the context vectors
    too), the prompt templates / rule, the context length and the entry; concurrent writers are
    safe (atomic writes) and a corrupt file is reported with its path and recomputed. Misses are
    always encoded in fp32 (autocast off), so a file never depends on the caller's precision. It
    serves the same cases as the memory cache (never a trainable text path in training mode); a
    trainable tower writes a new namespace at every evaluation (its weights changed).

    Fine-tuning the tower with a smaller learning rate: in the optimizer wrapper,
    ``paramwise_cfg=dict(custom_keys={'text_encoder.tower': dict(lr_mult=0.1)})`` (the tower's
    parameters are named ``<...>.text_encoder.tower.*``; the context vectors
    ``<...>.text_encoder.context_vectors``).

    Args:
        model_name: open_clip architecture (``open_clip.list_models()``: ``'ViT-B-16'``,
            ``'ViT-L-14'``, ``'RN50'``, ``'convnext_base'``, ...; ``'QM-Tiny'`` for tests).
        pretrained: Local checkpoint file (open_clip state dict, or an mmengine / training
            checkpoint holding one) or an open_clip pretrained tag (downloaded on first use;
            offline, a ``FileNotFoundError`` names the file to fetch). None keeps the random
            initialisation (a frozen random tower logs a warning: no open-vocabulary meaning).
        templates: Template set for class-name tasks not in ``task_templates``: a name
            (``'photo'``, ``'simple'``, ``'all'``, ``'name'``, ``'raw'``) or a list of templates.
        task_templates: Per-task override, e.g. ``{'semantic': 'all', 'referring': 'raw'}``;
            merged over the defaults ``{'referring': 'raw', 'foreground': 'raw'}``.
        freeze_tower: Keep the text tower frozen (no grad, eval mode).
        num_context_tokens: Number L of learnable CoOp context vectors prepended to class-name
            prompts (``"[v]_1 ... [v]_L name."``, replacing the templates), shared by all datasets;
            0 disables them. Raw texts (referring, foreground) get no context.
        chunk_size: Prompts per text-tower pass (bounds memory for large vocabularies).
        context_length: Token length (default: the architecture's, 77 for CLIP).
        synonym_sep: Separator between synonyms inside a class name (``'person/people'``);
            None disables splitting strings (lists of synonyms are still accepted).
        clean_names: Replace underscores by spaces in class names.
        cache_size: Bound on cached embeddings (LRU); 0 disables the cache.
        cache_dir: Download cache for pretrained tags.
        disk_cache_dir: Folder of the on-disk embedding cache (see above); None: the value of
            ``$MMQM_TEXT_CACHE_DIR`` if set, else no disk cache.
        init_cfg: mmengine init config (the pretrained tower is re-loaded after it).
    """

    def __init__(self,
                 model_name: str = 'ViT-B-16',
                 pretrained: Optional[str] = None,
                 templates: TemplateSpec = 'photo',
                 task_templates: Optional[Dict[str, TemplateSpec]] = None,
                 freeze_tower: bool = True,
                 num_context_tokens: int = 0,
                 chunk_size: int = 256,
                 context_length: Optional[int] = None,
                 synonym_sep: Optional[str] = '/',
                 clean_names: bool = True,
                 cache_size: int = 100_000,
                 cache_dir: Optional[str] = None,
                 disk_cache_dir: Optional[str] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.model_name, self.pretrained, self.cache_dir = model_name, pretrained, cache_dir
        self.freeze_tower = freeze_tower
        if num_context_tokens < 0:
            raise ValueError(f'num_context_tokens must be >= 0, got {num_context_tokens}')
        self.num_context_tokens = num_context_tokens
        if chunk_size < 1:
            raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
        self.chunk_size = chunk_size
        # Prompt rules: validated up front so a bad config fails at build time.
        self.prompts = PromptRules(templates, task_templates, synonym_sep, clean_names)

        # The text tower (vision tower never built) and its tokenizer.
        self.tower, self.clip_cfg = build_text_tower(model_name)
        tower_len = int(getattr(self.tower, 'context_length', 77))
        self.context_length = min(context_length or tower_len, tower_len)
        self.tokenizer = get_tokenizer(model_name, self.context_length)
        pad_id = getattr(self.tokenizer, 'pad_token_id', None)
        self._pad_id = 0 if pad_id is None else int(pad_id)
        self._own_forward = supports_token_forward(self.tower)
        self._can_trim = can_trim_padding(self.tower)
        if pretrained:
            self._load_pretrained()
        if freeze_tower:
            for param in self.tower.parameters():
                param.requires_grad_(False)
            self.tower.eval()
            if not pretrained:
                print_log(random_frozen_tower_warning(model_name), logger='current',
                          level=logging.WARNING)

        # CoOp context vectors (LMSeg section 3.2: "[v]_1...[v]_L [class name]", shared).
        if num_context_tokens > 0:
            check_context_support(model_name, self._own_forward, self.tokenizer,
                                  num_context_tokens, self.context_length)
            width = self.tower.token_embedding.embedding_dim
            self.context_vectors = nn.Parameter(torch.empty(num_context_tokens, width))
            nn.init.normal_(self.context_vectors, std=0.02)
        else:
            self.register_parameter('context_vectors', None)

        self._cache = TextEmbeddingCache(cache_size)
        disk_dir = resolve_disk_cache_dir(disk_cache_dir)
        #: The on-disk cache (None when off).
        self.disk_cache = TextEmbeddingDiskCache(disk_dir) if disk_dir else None
        self._fingerprints = (TensorsFingerprint(), TensorsFingerprint())  # tower, context
        self._rule_ids: Dict[PromptRule, int] = {}
        #: Number of text-tower passes so far (each processes up to ``chunk_size`` prompts).
        self.tower_calls = 0

    # ------------------------------------------------------------------ setup and state
    @property
    def text_dims(self) -> int:
        """Dimension D of the text embeddings (the joint space)."""
        return text_embed_dim(self.tower, self.clip_cfg)

    @property
    def device(self) -> torch.device:
        """Device of the tower's weights (where embeddings are produced)."""
        return next(self.tower.parameters()).device

    @property
    def cache(self) -> TextEmbeddingCache:
        """The embedding cache (read it for statistics; :meth:`clear_cache` to empty it)."""
        return self._cache

    def clear_cache(self) -> None:
        """Drop cached embeddings (call after changing the tower's weights by hand)."""
        self._cache.clear()

    def _load_pretrained(self) -> None:
        """Load the text tower from ``self.pretrained`` (file or tag) and clear the cache.

        Raises:
            FileNotFoundError: The file is missing or the tag cannot be downloaded (offline); the
                message names the file to fetch and ``model.head.text_encoder.pretrained``.
        """
        try:
            path = resolve_pretrained(self.model_name, self.pretrained, self.cache_dir)
        except OSError as err:  # missing file, unknown tag, failed download (no network)
            raise FileNotFoundError(
                f'OpenCLIPTextEncoder: text-tower weights pretrained={self.pretrained!r} of '
                f'{self.model_name!r} are not available ({err}). '
                f'{text_tower_download_hint(self.model_name, self.pretrained)}') from err
        if path != self.pretrained and quick_gelu_mismatch(self.model_name, self.pretrained):
            print_log(f'OpenCLIPTextEncoder: tag {self.pretrained!r} was trained with QuickGELU '
                      f'but {self.model_name!r} uses GELU; use model_name='
                      f"'{self.model_name}-quickgelu'", logger='current', level=logging.WARNING)
        load_text_tower_weights(self.tower, path)
        if hasattr(self, '_cache'):
            self._cache.clear()

    def init_weights(self) -> None:
        """Apply this module's ``init_cfg``, then re-load the pretrained tower (a parent's or this
        module's ``init_cfg`` may have overwritten it, e.g. ``layer='Linear'`` reaches the tower's
        MLPs); the context vectors keep their construction-time initialisation."""
        reload = not self._is_init and bool(self.pretrained)
        super().init_weights()
        if reload:
            self._load_pretrained()
        self._cache.clear()

    def train(self, mode: bool = True) -> 'OpenCLIPTextEncoder':
        """Set the mode; a frozen tower stays in eval mode; a trainable text path drops the cache
        (its cached rows may predate the last optimizer step)."""
        super().train(mode)
        if self.freeze_tower:
            self.tower.eval()
        if self._text_trainable():
            self._cache.clear()
        return self

    def _apply(self, fn, recurse: bool = True):  # noqa: D401
        """Move cached embeddings with the module (``.to`` / ``.cuda`` / ``.half``)."""
        super()._apply(fn, recurse)
        if hasattr(self, '_cache'):
            self._cache.apply(fn)
        return self

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._cache.clear()

    def _text_trainable(self, uses_context: bool = True) -> bool:
        return (not self.freeze_tower) or (uses_context and self.context_vectors is not None)

    # ------------------------------------------------------------------ text encoding
    def encode_vocabulary(self, texts: Sequence[VocabEntry], task: str = 'semantic',
                          templates: Optional[TemplateSpec] = None) -> Tensor:
        """Encode a vocabulary into unit-norm text embeddings (cached).

        Args:
            texts: K entries: class names (a string, synonyms joined by ``synonym_sep``, or a list
                of synonyms) or, for raw tasks, sentences.
            task: One of :data:`mmquerymeld.utils.TASKS`; selects the prompt rule.
            templates: Override of the task's template set for this call.

        Returns:
            ``[K, text_dims]`` float32 unit-norm embeddings on the module's device. They carry
            gradients only for a trainable text path in training mode.
        """
        temps, raw, uses_context = self.prompts.rule(task, templates,
                                                     self.context_vectors is not None)
        device = self.device
        if len(texts) == 0:
            return torch.zeros(0, self.text_dims, device=device)
        # Small integer per prompt rule: cheap hashing of the cache keys.
        rule_id = self._rule_ids.setdefault((temps, raw, uses_context), len(self._rule_ids))
        trainable = self.training and self._text_trainable(uses_context)
        memo_key = None
        if not trainable:
            # A vocabulary seen recently (same rule, same texts): no parsing, one lookup.
            memo_key = (rule_id, tuple(_hashable(t) for t in texts))
            try:
                memoised = self._cache.lookup_vocabulary(memo_key)
            except TypeError:  # unhashable junk: the validation below names it
                memo_key = memoised = None
            if memoised is not None:
                return memoised
        entries = [self.prompts.synonyms(t, raw, i) for i, t in enumerate(texts)]
        keys: List[Hashable] = [(rule_id, e) for e in entries]
        if trainable:
            # Trainable path: no cache, gradients flow to the tower / context vectors.
            unique = list(dict.fromkeys(entries))
            index = {e: i for i, e in enumerate(unique)}
            embeds = self._encode_entries(unique, temps, raw, uses_context)
            return embeds[torch.tensor([index[e] for e in entries], device=device)]
        missing = self._cache.missing(keys)
        if missing:
            embeds = self._encode_missing([k[1] for k in missing], temps, raw, uses_context)
            if self._cache.max_entries == 0:
                lookup = dict(zip(missing, embeds))
                return torch.stack([lookup[k] for k in keys])
            self._cache.put(missing, embeds)
        return self._cache.gather(keys, memo_key)

    def encode_batch_vocabularies(
            self, texts_per_sample: Sequence[Sequence[VocabEntry]],
            tasks: Union[str, Sequence[str]] = 'semantic') -> Tuple[Tensor, Tensor]:
        """Encode one vocabulary per sample and pad them into a batch.

        Entries shared by several samples of the same task are encoded once (one tower pass for
        the whole batch when the text path is trainable).

        Args:
            texts_per_sample: B vocabularies (``metainfo['texts']`` of each data sample).
            tasks: One task for all, or B tasks (``metainfo['task']``).

        Returns:
            ``(text_embeds, text_valid)``: ``[B, K_max, text_dims]`` (zeros where padded) and
            ``[B, K_max]`` bool (valid entries first).
        """
        num = len(texts_per_sample)
        tasks = [tasks] * num if isinstance(tasks, str) else list(tasks)
        if len(tasks) != num:
            raise ValueError(f'tasks: {len(tasks)} tasks for {num} vocabularies')
        k_max = max((len(t) for t in texts_per_sample), default=0)
        device = self.device
        valid = torch.zeros(num, k_max, dtype=torch.bool, device=device)
        rows: List[Optional[Tensor]] = [None] * num
        for task in dict.fromkeys(tasks):
            members = [b for b in range(num) if tasks[b] == task]
            union: Dict[Hashable, int] = {}
            for b in members:
                for entry in texts_per_sample[b]:
                    union.setdefault(_hashable(entry), len(union))
            if not union:
                continue
            embeds = self.encode_vocabulary([_unhashable(e) for e in union], task)
            for b in members:
                idx = [union[_hashable(e)] for e in texts_per_sample[b]]
                rows[b] = embeds[torch.tensor(idx, device=device, dtype=torch.long)]
        out = torch.zeros(num, k_max, self.text_dims, device=device)
        for b in range(num):
            k = len(texts_per_sample[b])
            valid[b, :k] = True
            if k:
                out[b, :k] = rows[b]  # in place: gradients still reach rows[b]
        return out, valid

    def _encode_missing(self, entries: List[Tuple[str, ...]], templates: Tuple[str, ...],
                        raw: bool, uses_context: bool) -> Tensor:
        """Embeddings ``[E, text_dims]`` of entries missing from the memory cache: from the disk
        cache where present, else from the tower in fp32 (autocast off), without gradients."""

        def encode(todo: List[Tuple[str, ...]]) -> Tensor:
            with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
                return self._encode_entries(todo, templates, raw, uses_context)

        if self.disk_cache is None:
            return encode(entries)
        weights = self._fingerprints[0](
            list(self.tower.named_parameters()) + list(self.tower.named_buffers()))
        context = self._fingerprints[1]([('context_vectors', self.context_vectors)]) \
            if uses_context else None
        key = dict(format=FORMAT_VERSION, arch=self.model_name, weights=weights, context=context,
                   templates=list(templates), raw=raw, context_length=self.context_length)
        return self.disk_cache.fetch_or_encode(key, entries, encode).to(self.device)

    def _encode_entries(self, entries: Sequence[Tuple[str, ...]], templates: Sequence[str],
                        raw: bool, uses_context: bool) -> Tensor:
        """Ensemble prompts into one unit-norm embedding per entry (templates, then synonyms).

        Args:
            entries: E tuples of synonyms (one sentence for raw texts).
            templates: Template set (ignored for raw texts).
            raw: Encode texts as given.
            uses_context: Prepend the context vectors.

        Returns:
            ``[E, text_dims]`` float32, unit norm.
        """
        # Sorted by length: similar lengths share a chunk, trimming the padding saves more.
        prompts, prompt_syn, syn_entry = build_prompts(entries, templates, raw)
        device = self.device
        prefix = context_prefix(self.num_context_tokens) + ' ' if uses_context else ''
        syn_sum: Optional[Tensor] = None
        prompt_syn_t = torch.tensor(prompt_syn, device=device)
        for start in range(0, len(prompts), self.chunk_size):
            chunk = prompts[start:start + self.chunk_size]
            ids, truncated = tokenize(self.tokenizer, [prefix + p for p in chunk],
                                      self.context_length)
            for i in truncated.nonzero().flatten().tolist():
                warnings.warn(f'text {chunk[i]!r} is longer than the text encoder\'s context '
                              f'length {self.context_length}: truncated', UserWarning)
            ids = ids.to(device)
            if torch.is_grad_enabled() and len(prompts) > self.chunk_size:
                # Bounded memory while training the text path: keep only chunk outputs.
                feats = checkpoint(self._encode_tokens, ids, uses_context, use_reentrant=False)
            else:
                feats = self._encode_tokens(ids, uses_context)
            feats = F.normalize(feats.float(), dim=-1)
            part = feats.new_zeros(len(syn_entry), feats.shape[-1]).index_add(
                0, prompt_syn_t[start:start + len(chunk)], feats)
            syn_sum = part if syn_sum is None else syn_sum + part
        # Sum of unit vectors, renormalised == renormalised mean (CLIP prompt ensembling).
        syn_embeds = F.normalize(syn_sum, dim=-1)
        entry_sum = syn_embeds.new_zeros(len(entries), syn_embeds.shape[-1]).index_add(
            0, torch.tensor(syn_entry, device=device), syn_embeds)
        return F.normalize(entry_sum, dim=-1)

    def _encode_tokens(self, ids: Tensor, uses_context: bool = False) -> Tensor:
        """One text-tower pass over ``[N, L]`` token ids -> ``[N, text_dims]`` raw features.

        open_clip's own towers go through :func:`~.coop.encode_text_tokens` (context vectors in
        slots ``1..num_context_tokens``, trailing padding cut); others through ``tower(ids)``.
        """
        self.tower_calls += 1
        if not self._own_forward:
            return self.tower(ids)
        return encode_text_tokens(self.tower, ids,
                                  self.context_vectors if uses_context else None,
                                  self._pad_id if self._can_trim else None)


def _hashable(entry: VocabEntry) -> Hashable:
    return tuple(_hashable(e) for e in entry) if isinstance(entry, (list, tuple)) else entry


def _unhashable(entry: Hashable) -> VocabEntry:
    return entry if isinstance(entry, str) else list(entry)
