"""The transformers engine's own decoding loop: greedy == transformers generate, logprobs == the learner's, only the
recipe's sampling settings apply, sampling follows softmax(z / T), and seeds reproduce."""
import math

import pytest
import torch

from rl.core.collate import collate
from rl.core.episode import Episode, SamplingParams
from rl.train.learner import completion_logprobs
from rl.train.models import load_causal_lm, load_tokenizer
from rl.rollout.engines.hf import HFEngine, filter_logits


@pytest.fixture(scope="module")
def setup(micro_model_dir):
    tok = load_tokenizer(str(micro_model_dir))
    model = load_causal_lm(str(micro_model_dir)).eval()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(5, len(tok), (n,), generator=g).tolist() for n in (3, 7, 5)]  # left padding differs
    return tok, model, prompts


def test_greedy_equals_transformers_generate(setup):
    tok, model, prompts = setup
    groups = HFEngine(model, tok).generate(prompts, SamplingParams(n=1, greedy=True, max_tokens=12))
    for p, (c,) in zip(prompts, groups):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             do_sample=False, max_new_tokens=12, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
        cut = ref.index(tok.eos_token_id) + 1 if tok.eos_token_id in ref else len(ref)
        assert c.completion_ids == ref[:cut]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_logprobs_equal_the_learners(setup, temperature):
    tok, model, prompts = setup
    groups = HFEngine(model, tok).generate(prompts, SamplingParams(n=4, temperature=temperature, max_tokens=10,
                                                                   seed=1))
    episodes = [Episode(0, {}, c) for group in groups for c in group]
    batch = collate(episodes, tok.pad_token_id)
    with torch.no_grad():
        learner = completion_logprobs(model, batch, temperature)  # [N, C]
    torch.testing.assert_close(batch.sampling_logprobs * batch.completion_mask, learner * batch.completion_mask,
                               rtol=0, atol=1e-5)
    assert batch.completion_mask.sum() > 20


def test_generation_config_extras_do_not_apply(setup):
    """A model's generation_config (repetition_penalty, top_k, ...) must not change what the recipe samples."""
    tok, model, prompts = setup
    params = SamplingParams(n=4, temperature=1.0, max_tokens=10, seed=5)
    clean = HFEngine(model, tok).generate(prompts, params)
    saved = model.generation_config.to_dict()
    model.generation_config.update(repetition_penalty=3.0, top_k=2, top_p=0.5, no_repeat_ngram_size=1)
    try:
        dirty = HFEngine(model, tok).generate(prompts, params)
    finally:
        model.generation_config.update(**saved)
    assert [[c.completion_ids for c in g] for g in dirty] == [[c.completion_ids for c in g] for g in clean]


def test_first_token_frequencies_follow_softmax(setup):
    """4,000 one-token samples at T = 2: the empirical frequencies match softmax(logits / 2) (seeded, so exact
    reruns; the bound is 4 standard errors per token)."""
    tok, model, prompts = setup
    p = prompts[0]
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([p])).logits[0, -1] / 2.0, -1)  # [V]
    (group,) = HFEngine(model, tok, max_batch_size=4000).generate(
        [p], SamplingParams(n=4000, temperature=2.0, max_tokens=1, seed=11))
    counts = torch.bincount(torch.tensor([c.completion_ids[0] for c in group]), minlength=len(probs)).float()
    se = (probs * (1 - probs) / 4000).sqrt()
    assert ((counts / 4000 - probs).abs() <= 4 * se + 1e-4).all()
    # and each sample's logprob is that token's log-probability at T = 2
    c = group[0]
    assert c.logprobs[0] == pytest.approx(math.log(probs[c.completion_ids[0]].item()), abs=1e-5)


def test_seeds_reproduce_and_differ(setup):
    tok, model, prompts = setup
    engine = HFEngine(model, tok)
    def ids(seed):
        return [[c.completion_ids for c in g] for g in engine.generate(prompts, SamplingParams(n=3, max_tokens=8,
                                                                                                seed=seed))]
    assert ids(3) == ids(3)
    assert ids(3) != ids(4)
    before = torch.get_rng_state()
    ids(3)
    assert torch.equal(torch.get_rng_state(), before)  # the engine's own generator: global RNG untouched


@pytest.mark.parametrize("top_k, top_p, expected", [
    (0, 1.0, [2.0, 1.0, 0.0, -1.0]),  # nothing filtered
    (3, 1.0, [2.0, 1.0, 0.0, -math.inf]),
    (1, 1.0, [2.0, -math.inf, -math.inf, -math.inf]),
    # p = softmax([2, 1, 0, -1]) = [.644, .237, .087, .032]: the nucleus reaching 0.8 is the first two tokens
    (0, 0.8, [2.0, 1.0, -math.inf, -math.inf]),
    (0, 0.5, [2.0, -math.inf, -math.inf, -math.inf]),  # the top token alone already reaches 0.5
    (0, 0.9, [2.0, 1.0, 0.0, -math.inf]),  # .644 + .237 = .881 < .9: three tokens
])
def test_filter_logits(top_k, top_p, expected):
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    torch.testing.assert_close(filter_logits(z, top_k, top_p), torch.tensor([expected]))


def test_progress_ticks_once_per_decoding_step(setup):
    """One prompt, greedy, max_tokens 12: the loop runs one step per completion token (it stops at EOS or at 12),
    and each step ticks `on_progress` once: the rollout worker's evidence that a long batch is still moving."""
    tok, model, prompts = setup
    engine, ticks = HFEngine(model, tok), []
    engine.on_progress = lambda: ticks.append(1)
    (c,), = engine.generate(prompts[:1], SamplingParams(n=1, greedy=True, max_tokens=12))
    assert len(ticks) == len(c.completion_ids) >= 1
