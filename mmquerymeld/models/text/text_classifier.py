"""The open-vocabulary classifier: a CLIP text tower (open_clip) scoring decoder queries.

Paper section 3.3: class names and referring expressions are both text; a query's class logit is
the dot product of its class embedding with the text embedding, trained with the focal loss.
LMSeg sections 3.2-3.3: frozen CLIP text encoder, a linear adapter between the query and text
spaces, a temperature, and optional learnable CoOp context vectors shared across datasets.
"""
import math
import warnings
from typing import Dict, Hashable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from open_clip.transformer import text_global_pool
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mmdet.registry import MODELS
from mmquerymeld.utils import TASKS
from .embedding_cache import TextEmbeddingCache
from .open_clip_utils import (build_text_tower, get_tokenizer, is_native_tower,
                              load_text_tower_weights, resolve_pretrained, text_embed_dim,
                              tokenize)
from .templates import (DEFAULT_TASK_TEMPLATES, RAW_TEMPLATE_SETS, TemplateSpec, VocabEntry,
                        fill_templates, raw_text, resolve_templates, split_synonyms)

#: Placeholder word whose token slots the CoOp context vectors replace.
_CTX_PLACEHOLDER = 'x'


@MODELS.register_module()
class OpenCLIPTextClassifier(BaseModule):
    """Text classifier on any open_clip text tower: ``logits[b, q, k] = s * cos(W f_bq, t_k) + b``.

    Texts become unit-norm embeddings ``t_k`` (:meth:`encode_vocabulary`); decoder queries
    ``f_bq`` are projected to the text space by a linear layer ``W`` and normalised; ``s`` is a
    learnable logit scale (``exp`` of a parameter, CLIP / LMSeg temperature ``1 / 0.07``) and
    ``b`` a learnable bias initialised so that ``sigmoid(b) = prior_prob`` (the focal-loss prior
    of RetinaNet). Classification is per-text sigmoid: there is no background embedding.

    Prompt rules per task (see :mod:`.templates`): class-name tasks (semantic, instance,
    panoptic, detection by default) are cleaned (``'_'`` -> ``' '``), split into synonyms and
    ensembled over a template set; ``referring`` and ``foreground`` texts are encoded as given
    (template set ``'raw'``). Over-long texts are truncated to the context length with a warning.

    Caching: embeddings are cached per (prompt rule, vocabulary entry), detached, on the module's
    device (:class:`TextEmbeddingCache`); a fixed vocabulary runs the text tower once per
    process and module. With a trainable text path (``freeze_text_encoder=False`` or
    ``num_context_tokens > 0``) the cache is bypassed in training mode and cleared whenever the
    train/eval mode is set; any ``load_state_dict`` also clears it.

    Fine-tuning the tower with a smaller learning rate: in the optimizer wrapper,
    ``paramwise_cfg=dict(custom_keys={'text_encoder': dict(lr_mult=0.1)})`` (the tower's
    parameters are named ``<...>.text_encoder.*``; the context vectors ``<...>.context_vectors``).

    Args:
        model_name: open_clip architecture (``open_clip.list_models()``: ``'ViT-B-16'``,
            ``'ViT-L-14'``, ``'RN50'``, ``'convnext_base'``, ...; ``'QM-Tiny'`` for tests).
        pretrained: Local checkpoint file (open_clip state dict, or an mmengine / training
            checkpoint holding one) or an open_clip pretrained tag (downloaded on first use).
            None keeps the random initialisation.
        query_dims: Decoder hidden size (input of the projection).
        templates: Template set for class-name tasks not in ``task_templates``: a name
            (``'photo'``, ``'simple'``, ``'all'``, ``'name'``, ``'raw'``) or a list of templates.
        task_templates: Per-task override, e.g. ``{'semantic': 'all', 'referring': 'raw'}``;
            merged over the defaults ``{'referring': 'raw', 'foreground': 'raw'}``.
        freeze_text_encoder: Keep the text tower frozen (no grad, eval mode).
        num_context_tokens: Number L of learnable CoOp context vectors prepended to class-name
            prompts (``"[v]_1 ... [v]_L name."``, replacing the templates), shared by all datasets;
            0 disables them. Raw texts (referring, foreground) get no context.
        chunk_size: Prompts per text-tower pass (bounds memory for large vocabularies).
        prior_prob: Initial sigmoid probability of every (query, text) pair.
        init_cfg: mmengine init config.
        context_length: Token length (default: the architecture's, 77 for CLIP).
        synonym_sep: Separator between synonyms inside a class name (``'person/people'``);
            None disables splitting strings (lists of synonyms are still accepted).
        clean_names: Replace underscores by spaces in class names.
        cache_size: Bound on cached embeddings (LRU); 0 disables the cache.
        init_logit_scale: Initial logit scale ``s`` (not its log).
        max_logit_scale: Upper clamp of ``s`` (CLIP uses 100).
        learnable_logit_scale: Learn ``s``; otherwise it stays ``init_logit_scale``.
        normalize_queries: Cosine similarity (True) or raw dot product of the projected queries.
        padding_logit: Logit given to padded texts (large negative but finite: focal loss stays
            finite, fp16 can hold it).
        cache_dir: Download cache for pretrained tags.
    """

    def __init__(self,
                 model_name: str = 'ViT-B-16',
                 pretrained: Optional[str] = None,
                 query_dims: int = 256,
                 templates: TemplateSpec = 'photo',
                 task_templates: Optional[Dict[str, TemplateSpec]] = None,
                 freeze_text_encoder: bool = True,
                 num_context_tokens: int = 0,
                 chunk_size: int = 256,
                 prior_prob: float = 0.01,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 context_length: Optional[int] = None,
                 synonym_sep: Optional[str] = '/',
                 clean_names: bool = True,
                 cache_size: int = 100_000,
                 init_logit_scale: float = 1 / 0.07,
                 max_logit_scale: float = 100.0,
                 learnable_logit_scale: bool = True,
                 normalize_queries: bool = True,
                 padding_logit: float = -1e4,
                 cache_dir: Optional[str] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if chunk_size < 1:
            raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f'prior_prob must be in (0, 1), got {prior_prob}')
        if num_context_tokens < 0:
            raise ValueError(f'num_context_tokens must be >= 0, got {num_context_tokens}')
        if not 0.0 < init_logit_scale <= max_logit_scale:
            raise ValueError(f'init_logit_scale must be in (0, max_logit_scale={max_logit_scale}]'
                             f', got {init_logit_scale}')
        self.model_name = model_name
        self.pretrained = pretrained
        self.cache_dir = cache_dir
        self.query_dims = query_dims
        self.freeze_text_encoder = freeze_text_encoder
        self.num_context_tokens = num_context_tokens
        self.chunk_size = chunk_size
        self.prior_prob = prior_prob
        self.synonym_sep = synonym_sep
        self.clean_names = clean_names
        self.max_logit_scale = max_logit_scale
        self.normalize_queries = normalize_queries
        self.padding_logit = padding_logit

        # Prompt rules: validated up front so a bad config fails at build time.
        self.default_templates = resolve_templates(templates, 'templates')
        self._default_is_raw = isinstance(templates, str) and templates in RAW_TEMPLATE_SETS
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

        # The text tower (vision tower never built) and its tokenizer.
        self.text_encoder, self.clip_cfg = build_text_tower(model_name)
        tower_len = int(getattr(self.text_encoder, 'context_length', 77))
        self.context_length = min(context_length or tower_len, tower_len)
        self.tokenizer = get_tokenizer(model_name, self.context_length)
        pad_id = getattr(self.tokenizer, 'pad_token_id', None)
        self._pad_id = 0 if pad_id is None else int(pad_id)
        self._native = is_native_tower(self.text_encoder)
        self._own_forward = (self._native and getattr(self.text_encoder, 'cls_emb', None) is None
                             and not getattr(self.text_encoder, 'use_pad_mask', False))
        # Causal attention + pooling at/before the end token: trailing padding never reaches the
        # pooled token, so each chunk is cut to its longest sequence (same output, less compute).
        self._can_trim = (self._own_forward and self.text_encoder.attn_mask is not None
                          and self.text_encoder.pool_type in ('argmax', 'eos', 'first'))
        if pretrained:
            self._load_pretrained()
        if freeze_text_encoder:
            for param in self.text_encoder.parameters():
                param.requires_grad_(False)
            self.text_encoder.eval()

        # CoOp context vectors (LMSeg section 3.2: "[v]_1...[v]_L [class name]", shared).
        if num_context_tokens > 0:
            self._check_context_support()
            width = self.text_encoder.token_embedding.embedding_dim
            self.context_vectors = nn.Parameter(torch.empty(num_context_tokens, width))
            nn.init.normal_(self.context_vectors, std=0.02)
        else:
            self.register_parameter('context_vectors', None)

        # Query -> text space adapter, temperature and focal-prior bias.
        self.query_proj = nn.Linear(query_dims, self.text_dims)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)),
                                        requires_grad=learnable_logit_scale)
        self.logit_bias = nn.Parameter(torch.tensor(-math.log((1 - prior_prob) / prior_prob)))

        self._cache = TextEmbeddingCache(cache_size)
        self._rule_ids: Dict[Tuple[Tuple[str, ...], bool, bool], int] = {}
        #: Number of text-tower passes so far (each processes up to ``chunk_size`` prompts).
        self.tower_calls = 0

    # ------------------------------------------------------------------ setup helpers
    @property
    def text_dims(self) -> int:
        """Dimension of the text embeddings (the joint space)."""
        return text_embed_dim(self.text_encoder, self.clip_cfg)

    @property
    def cache(self) -> TextEmbeddingCache:
        """The embedding cache (read it for statistics; :meth:`clear_cache` to empty it)."""
        return self._cache

    def clear_cache(self) -> None:
        """Drop cached embeddings (call after changing the tower's weights by hand)."""
        self._cache.clear()

    def _load_pretrained(self) -> None:
        """Load the text tower from ``self.pretrained`` (file or tag) and clear the cache."""
        path = resolve_pretrained(self.model_name, self.pretrained, self.cache_dir)
        load_text_tower_weights(self.text_encoder, path)
        if hasattr(self, '_cache'):
            self._cache.clear()

    def _check_context_support(self) -> None:
        """Context vectors need open_clip's own text tower and a SOT-first BPE tokenizer."""
        if not self._own_forward or not hasattr(self.tokenizer, 'sot_token_id'):
            raise ValueError(f'num_context_tokens: learnable context needs an open_clip '
                             f'TextTransformer with a CLIP tokenizer; {self.model_name!r} has '
                             f'{type(self.text_encoder).__name__} / '
                             f'{type(self.tokenizer).__name__}')
        ids = self.tokenizer([self._ctx_prefix() + ' cat'], context_length=self.context_length)
        slots = ids[0, 1:self.num_context_tokens + 1]
        if ids[0, 0] != self.tokenizer.sot_token_id or slots.unique().numel() != 1:
            raise ValueError('num_context_tokens: the tokenizer does not map the context '
                             f'placeholder {_CTX_PLACEHOLDER!r} to one token per slot')
        if self.num_context_tokens + 3 > self.context_length:
            raise ValueError(f'num_context_tokens={self.num_context_tokens} leaves no room in '
                             f'context_length={self.context_length}')

    def _ctx_prefix(self) -> str:
        return ' '.join([_CTX_PLACEHOLDER] * self.num_context_tokens)

    def init_weights(self) -> None:
        """Apply this module's own ``init_cfg``, then re-load the pretrained tower (a parent's or
        this module's ``init_cfg`` may have overwritten it, e.g. ``layer='Linear'`` reaches the
        tower's MLPs); the scale, bias and context vectors keep their construction-time
        initialisation."""
        reload = not self._is_init and bool(self.pretrained)
        super().init_weights()
        if reload:
            self._load_pretrained()
        self._cache.clear()

    def train(self, mode: bool = True) -> 'OpenCLIPTextClassifier':
        """Set the mode; a frozen tower stays in eval mode; a trainable text path drops the cache
        (its cached rows may predate the last optimizer step)."""
        super().train(mode)
        if self.freeze_text_encoder:
            self.text_encoder.eval()
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
        return (not self.freeze_text_encoder) or (uses_context and self.context_vectors is not None)

    # ------------------------------------------------------------------ text encoding
    def _prompt_rule(self, task: str,
                     templates: Optional[TemplateSpec]) -> Tuple[Tuple[str, ...], bool, bool]:
        """``(templates, raw, uses_context)`` for a task (optionally overriding templates)."""
        if task not in TASKS:
            raise KeyError(f'task: unknown task {task!r}; tasks: {TASKS}')
        if templates is not None:
            temps = resolve_templates(templates, 'templates')
            raw = isinstance(templates, str) and templates in RAW_TEMPLATE_SETS
        elif task in self.task_templates:
            temps, raw = self.task_templates[task]
        else:
            temps, raw = self.default_templates, self._default_is_raw
        uses_context = self.context_vectors is not None and not raw
        if uses_context:
            temps = ('{}.', )  # CoOp: "[v]_1 ... [v]_L name." replaces hand-made templates
        return temps, raw, uses_context

    def _entry_synonyms(self, entry: VocabEntry, raw: bool, index: int) -> Tuple[str, ...]:
        where = f'texts[{index}]'
        if raw:
            return (raw_text(entry, where), )
        return split_synonyms(entry, self.synonym_sep, self.clean_names, where)

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
        temps, raw, uses_context = self._prompt_rule(task, templates)
        device = self.logit_bias.device
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
        entries = [self._entry_synonyms(t, raw, i) for i, t in enumerate(texts)]
        keys: List[Hashable] = [(rule_id, e) for e in entries]
        if trainable:
            # Trainable path: no cache, gradients flow to the tower / context vectors.
            unique = list(dict.fromkeys(entries))
            index = {e: i for i, e in enumerate(unique)}
            embeds = self._encode_entries(unique, temps, raw, uses_context)
            return embeds[torch.tensor([index[e] for e in entries], device=device)]
        missing = self._cache.missing(keys)
        if missing:
            with torch.no_grad():
                embeds = self._encode_entries([k[1] for k in missing], temps, raw, uses_context)
            if self._cache.max_entries == 0:
                lookup = dict(zip(missing, embeds))
                return torch.stack([lookup[k] for k in keys])
            self._cache.put(missing, embeds)
        return self._cache.gather(keys, memo_key)

    def encode_batch_vocabularies(
            self, batch_texts: Sequence[Sequence[VocabEntry]],
            tasks: Union[str, Sequence[str]] = 'semantic') -> Tuple[Tensor, Tensor]:
        """Encode one vocabulary per sample and pad them into a batch.

        Entries shared by several samples of the same task are encoded once (one tower pass for
        the whole batch when the text path is trainable).

        Args:
            batch_texts: B vocabularies (``metainfo['texts']`` of each data sample).
            tasks: One task for all, or B tasks (``metainfo['task']``).

        Returns:
            ``(text_embeds, text_valid)``: ``[B, K_max, text_dims]`` (zeros where padded) and
            ``[B, K_max]`` bool, ready for :meth:`forward`.
        """
        num = len(batch_texts)
        tasks = [tasks] * num if isinstance(tasks, str) else list(tasks)
        if len(tasks) != num:
            raise ValueError(f'tasks: {len(tasks)} tasks for {num} vocabularies')
        k_max = max((len(t) for t in batch_texts), default=0)
        device = self.logit_bias.device
        valid = torch.zeros(num, k_max, dtype=torch.bool, device=device)
        rows: List[Optional[Tensor]] = [None] * num
        for task in dict.fromkeys(tasks):
            members = [b for b in range(num) if tasks[b] == task]
            union: Dict[Hashable, int] = {}
            for b in members:
                for entry in batch_texts[b]:
                    union.setdefault(_hashable(entry), len(union))
            if not union:
                continue
            embeds = self.encode_vocabulary([_unhashable(e) for e in union], task)
            for b in members:
                idx = [union[_hashable(e)] for e in batch_texts[b]]
                rows[b] = embeds[torch.tensor(idx, device=device, dtype=torch.long)]
        out = torch.zeros(num, k_max, self.text_dims, device=device)
        padded = []
        for b in range(num):
            k = len(batch_texts[b])
            valid[b, :k] = True
            row = rows[b] if rows[b] is not None else out.new_zeros(0, self.text_dims)
            padded.append(F.pad(row, (0, 0, 0, k_max - k)))
        if num:
            out = torch.stack(padded)
        return out, valid

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
        prompts: List[str] = []
        prompt_syn: List[int] = []
        syn_entry: List[int] = []
        for e, synonyms in enumerate(entries):
            for synonym in synonyms:
                for prompt in ([synonym] if raw else fill_templates(synonym, templates)):
                    prompts.append(prompt)
                    prompt_syn.append(len(syn_entry))
                syn_entry.append(e)
        # Similar lengths share a chunk, so trimming the padding columns saves more.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        prompts = [prompts[i] for i in order]
        prompt_syn = [prompt_syn[i] for i in order]
        device = self.logit_bias.device
        prefix = self._ctx_prefix() + ' ' if uses_context else ''
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
        """One text-tower pass.

        Mirrors ``open_clip.transformer.TextTransformer.forward`` for open_clip's own towers, with
        two additions: trailing padding columns are cut (exact under a causal mask with
        end-token pooling) and the CoOp context vectors replace the placeholder embeddings.

        Args:
            ids: ``[N, L]`` token ids on the module's device.
            uses_context: Replace slots ``1..num_context_tokens`` by the context vectors.

        Returns:
            ``[N, text_dims]`` unnormalised text features.
        """
        self.tower_calls += 1
        tower = self.text_encoder
        if not self._own_forward:
            return tower(ids)
        if self._can_trim:
            used = (ids != self._pad_id).any(dim=0).nonzero()
            ids = ids[:, :int(used.max()) + 1] if used.numel() else ids[:, :1]
        cast_dtype = tower.transformer.get_cast_dtype()
        x = tower.token_embedding(ids).to(cast_dtype)  # [N, L, width]
        if uses_context:
            n_ctx = self.num_context_tokens
            ctx = self.context_vectors.to(cast_dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], ctx, x[:, 1 + n_ctx:]], dim=1)
        seq_len = x.shape[1]
        attn_mask = tower.attn_mask
        if attn_mask is not None:
            attn_mask = attn_mask[:seq_len, :seq_len]
        x = x + tower.positional_embedding[:seq_len].to(cast_dtype)
        x = tower.transformer(x, attn_mask=attn_mask)
        x = tower.ln_final(x)
        pooled = text_global_pool(x, ids, tower.pool_type, eos_token_id=tower.eos_id)
        proj = tower.text_projection
        if proj is None:
            return pooled
        return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj

    # ------------------------------------------------------------------ classification
    def forward(self, query_feats: Tensor, text_embeds: Tensor,
                text_valid: Optional[Tensor] = None) -> Tensor:
        """Classify queries against texts.

        Args:
            query_feats: ``[B, Q, query_dims]`` decoder query features.
            text_embeds: ``[B, K, text_dims]`` per-sample or ``[K, text_dims]`` shared text
                embeddings (unit norm, from :meth:`encode_vocabulary`; renormalised here).
            text_valid: ``[B, K]`` bool, False for padding texts.

        Returns:
            ``[B, Q, K]`` logits; padded texts get ``padding_logit``.
        """
        if query_feats.dim() != 3 or query_feats.shape[-1] != self.query_dims:
            raise ValueError(f'query_feats: expected [B, Q, {self.query_dims}], got '
                             f'{tuple(query_feats.shape)}')
        if text_embeds.shape[-1] != self.text_dims or text_embeds.dim() not in (2, 3):
            raise ValueError(f'text_embeds: expected [B, K, {self.text_dims}] or '
                             f'[K, {self.text_dims}], got {tuple(text_embeds.shape)}')
        queries = self.query_proj(query_feats)  # [B, Q, D]
        if self.normalize_queries:
            queries = F.normalize(queries, dim=-1)
        texts = F.normalize(text_embeds, dim=-1).to(queries.dtype)
        if texts.dim() == 2:
            logits = torch.einsum('bqd,kd->bqk', queries, texts)
        else:
            if texts.shape[0] != queries.shape[0]:
                raise ValueError(f'text_embeds: batch {texts.shape[0]} != query batch '
                                 f'{queries.shape[0]}')
            logits = torch.einsum('bqd,bkd->bqk', queries, texts)
        scale = self.logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()
        logits = logits * scale + self.logit_bias
        if text_valid is not None:
            expected = (logits.shape[0], logits.shape[2])
            if tuple(text_valid.shape) != expected:
                raise ValueError(f'text_valid: expected shape {list(expected)}, got '
                                 f'{list(text_valid.shape)}')
            logits = logits.masked_fill(~text_valid.bool().unsqueeze(1), self.padding_logit)
        return logits


def _hashable(entry: VocabEntry) -> Hashable:
    return tuple(_hashable(e) for e in entry) if isinstance(entry, (list, tuple)) else entry


def _unhashable(entry: Hashable) -> VocabEntry:
    return entry if isinstance(entry, str) else list(entry)
