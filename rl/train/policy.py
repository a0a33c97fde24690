"""The learner's view of a causal LM: a module whose forward returns per-token logprobs of the completion, not logits.

    policy = CausalLMLogprobs(AutoModelForCausalLM.from_pretrained(...))
    logprobs, entropy = policy(input_ids, attention_mask, completion_mask, temperature=1.0)   # [n, C], [n, C] | None

Why a wrapper module: the chunked LM head (rl/core/logprobs.py) replaces `lm_head(hidden)` and must run *inside* the
forward of the module that DDP / FSDP2 / DeepSpeed wrap, so their hooks see one forward and one backward: DDP's
gradient reduction, FSDP2's unshard of the root unit (which holds embed_tokens, the final norm and lm_head), and
DeepSpeed ZeRO-3's parameter fetching. `accelerator.prepare` receives this module; `.lm` is the Hugging Face model
(saved, exported and pushed to the rollout engine under its own parameter names).

Only the C completion positions go through the LM head, and of those only the ones that count in the loss
(`completion_mask`): the others get logprob 0 and no LM-head work. Positions follow the attention mask, so left
padding does not shift them.

`packed=True` runs the same rows as one padding-free sequence [1, L] (rl/core/packing.py: real tokens end to end,
position ids restarting on every row, no attention mask, the row boundaries as flash-attention's `cu_seq_lens`), which
transformers' attention turns into per-row causal attention: flash-attention's varlen kernel, row by row (rows of
similar length grouped) for `sdpa_packed` (rl/train/packed_attention.py), a block-diagonal mask for sdpa / eager /
flex. The returned [n, C] tensors are the padded forward's. `packing_support(lm)` says whether a model can take packed
rows. `share_prompts=True` (with `packed`, `sdpa_packed` only): rows with identical prompt token ids keep one copy of
the prompt (rl/core/packing.py 5.), the rows' layout going to the attention as `shared_rows`; same results.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, ContextManager

import torch

from rl.core.collate import position_ids
from rl.core.logprobs import DEFAULT_CHUNK_ELEMENTS, chunked_token_logprobs
from rl.core.packing import pack_rows
from rl.train.packed_attention import SHARED_KEY, is_row_attention, row_boundaries

# Config attributes that change logits after the LM head; the chunked head does not apply them, so refuse the model.
UNSUPPORTED_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier",
                                "lm_head_multiplier")


def check_supported(lm: torch.nn.Module) -> None:
    """One-line error for models whose logits are not `lm_head(hidden)` (softcapping, logit scales, a head bias)."""
    config = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    for name in UNSUPPORTED_LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value not in (None, 1, 1.0):
            raise ValueError(f"{type(lm).__name__} sets config.{name}={value}: the chunked LM head computes "
                             f"log_softmax(lm_head(h) / T) only; this model is not supported")
    head = lm.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise ValueError(f"{type(lm).__name__}: the LM head must be a bias-free linear layer")


# Attention implementations whose transformers mask (or varlen kernel) isolates rows packed with restarting positions.
PACKING_ATTENTION = ("sdpa", "sdpa_packed", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")
# Layer kinds that are attention (anything else, e.g. linear attention or a state-space layer, carries state across
# the packed rows' boundaries).
ATTENTION_LAYERS = ("full_attention", "sliding_attention", "chunked_attention")


def packing_support(lm: torch.nn.Module) -> str | None:
    """None when `lm` can run packed rows (see the module docstring), else the reason it cannot (one line).
    Needs: an attention implementation from PACKING_ATTENTION, a decoder whose modelling module builds its masks with
    transformers' `create_causal_mask` (which detects packed position ids), and attention in every layer."""
    config = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    attn = getattr(config, "_attn_implementation", None)
    if attn not in PACKING_ATTENTION:
        return f"attention implementation {attn!r} is not one of {', '.join(PACKING_ATTENTION)}"
    base = getattr(lm, "base_model", lm)
    module = sys.modules.get(type(base).__module__)
    if module is None or not hasattr(module, "create_causal_mask"):
        return f"{type(base).__name__} does not build its attention masks with transformers' create_causal_mask"
    other = sorted(set(getattr(config, "layer_types", None) or ()) - set(ATTENTION_LAYERS))
    if other:
        return f"{type(lm).__name__} has {', '.join(other)} layers, which carry state across packed rows"
    return None


class CausalLMLogprobs(torch.nn.Module):
    """Wraps a transformers causal LM; forward -> (logprobs [n, C] float32, entropy [n, C] float32 | None).

    `head_gather(weight)` returns a context in which the LM-head weight is whole (DeepSpeed ZeRO-3 partitions it
    outside its module's forward); see rl/train/distributed.py. `chunk_elements` bounds one chunk's [k, V] logits.
    """

    def __init__(self, lm: torch.nn.Module, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                 head_gather: Callable[[torch.Tensor], ContextManager] | None = None):
        super().__init__()
        check_supported(lm)
        self.lm = lm
        self.chunk_elements = chunk_elements
        self.head_gather = head_gather or (lambda weight: contextlib.nullcontext())
        # FSDP auto-wrapping looks for the decoder layer classes here (accelerate reads `_no_split_modules`)
        self._no_split_modules = getattr(lm, "_no_split_modules", None)

    # The transformers-model interface that accelerate's FSDP2 preparation looks for on the module it is given
    # (accelerate/utils/fsdp_utils.py: re-tie embeddings after loading, group embed_tokens + final norm + lm_head,
    # find the final norm under `base_model_prefix`). Without them a tied lm_head would be sharded apart from
    # embed_tokens and trained as a separate matrix.
    base_model_prefix = "backbone"

    @property
    def backbone(self) -> torch.nn.Module:
        return self.lm.base_model

    @property
    def config(self):
        return self.lm.config

    def tie_weights(self, *args, **kwargs):
        return self.lm.tie_weights(*args, **kwargs)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.lm.get_input_embeddings()

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.lm.get_output_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor,
                temperature: float = 1.0, with_entropy: bool = False, packed: bool = False,
                share_prompts: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """input_ids, attention_mask [n, P + C] (prompt left-padded, completion right-padded); completion_mask
        [n, C] (1 on tokens whose logprob is needed). Position P - 1 + t predicts completion token t.
        packed: the rows run as one sequence of their real tokens (rl/core/packing.py), same results;
        share_prompts: and rows with identical prompts share one copy of it (needs `sdpa_packed`)."""
        n, C = completion_mask.shape
        needed = completion_mask > 0  # [n, C]
        if packed:
            if share_prompts and not is_row_attention(self.lm):
                raise ValueError("share_prompts needs the sdpa_packed attention (rl/train/packed_attention.py)")
            ids, pos, predict_at, targets, layout = pack_rows(input_ids, attention_mask, completion_mask,
                                                              share_prompts=share_prompts)  # [1, L], [M]
            # shared prompts: the rows' layout goes to sdpa_packed; else the row boundaries go to flash-attention's
            # varlen kernel, or to sdpa_packed (rl/train/packed_attention.py)
            rows = {SHARED_KEY: layout} if share_prompts else row_boundaries(attention_mask)
            hidden = self.lm.base_model(input_ids=ids, position_ids=pos, attention_mask=None, use_cache=False,
                                        **rows).last_hidden_state  # [1, L, H]
            h = hidden[0, predict_at]  # [M, H]
        else:
            hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                        position_ids=position_ids(attention_mask),
                                        use_cache=False).last_hidden_state  # [n, P + C, H]
            h = hidden[:, -C - 1:-1][needed]  # [M, H], M = needed positions
            targets = input_ids[:, -C:][needed]  # [M]
        weight = self.lm.get_output_embeddings().weight  # [V, H]
        if type(weight).__name__ == "DTensor":
            # accelerate's FSDP2 layout keeps lm_head in a group that stays unsharded through forward and backward
            # (a plain tensor here); a head sharded in a unit of its own would need its gradient averaged across
            # ranks by hand (a plain full_tensor() silently drops that), so that layout is refused
            raise RuntimeError("lm_head is an FSDP2-sharded DTensor inside the forward: prepare the model with "
                               "accelerate (fsdp_version: 2), which groups lm_head with the final norm")
        with self.head_gather(weight):
            logprobs, entropy = chunked_token_logprobs(h, weight, targets, temperature,
                                                       chunk_elements=self.chunk_elements,
                                                       with_entropy=with_entropy, gather=self.head_gather)
        # [M] -> [n, C]; masked_scatter keeps an all-masked micro-batch connected to the graph (a zero gradient)
        full = torch.zeros(n, C, dtype=torch.float32, device=hidden.device).masked_scatter(needed, logprobs)
        if entropy is not None:
            entropy = torch.zeros(n, C, dtype=torch.float32, device=hidden.device).masked_scatter(needed, entropy)
        return full, entropy
