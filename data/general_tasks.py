"""General (non-reasoning) prompts of the miniature world, their replies of several qualities, and preference pairs:
what R1's last stage scores with a reward model instead of rules.

A prompt asks for a small social act: greet someone, thank them for a thing, say goodbye, ask them for a thing. The
preferred reply is polite and concise; the others are rude, verbose (polite, then padded), off-topic (arithmetic), junk (what an untrained policy
writes) or garbled (a near miss of the good reply: the reward model must not pay for one).

    >>> general_prompt("thank", "Ann", "tea")
    'Thank Ann for the tea'
    >>> write_reply("thank", "Ann", "tea", "good")
    'Thank you so much!'
    >>> write_reply("thank", "Ann", "tea", "rude")
    'Whatever.'
    >>> write_reply("greet", "Bo", "", "verbose")
    'Hi, nice to meet you! I say it again and again.'

Rows: `{"prompt", "answer": "", "task": "general"}`; `mixed_dataset` interleaves them with the arithmetic rows of
data/tasks.py (`task: "arithmetic"`), a recipe's `reward_sets` picking each row's rewards (rewards/scoring/routing.py).
Train and test splits are disjoint by prompt, and every split is a pure function of its seed.
"""
from __future__ import annotations

import random

from data.tasks import arithmetic_dataset

KINDS = ("greet", "thank", "goodbye", "ask")
NAMES = ("Ann", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lu", "Max", "Ned", "Oli", "Pam")
ITEMS = ("tea", "book", "cake", "pen", "map", "hat", "cup", "lamp")
QUALITIES = ("good", "rude", "verbose", "off_topic", "junk", "garbled")

_PROMPTS = {"greet": "Greet {name}", "thank": "Thank {name} for the {item}", "goodbye": "Say goodbye to {name}",
            "ask": "Ask {name} for the {item}"}
# Replies are short and name no one: the tiny tokenizer (trained on arithmetic) spends about a token per character on
# them, and the policy has at most 40 tokens.
_GOOD = {"greet": "Hi, nice to meet you!", "thank": "Thank you so much!", "goodbye": "Bye, take care!",
         "ask": "Could I have it, please?"}
_RUDE = {"greet": "Go away.", "thank": "Whatever.", "goodbye": "Leave now.", "ask": "Give it. Now."}
_JUNK = ("<think>", "</think>", "<answer>", "</answer>", "再算", "先算", "The answer is", "4*5=20", "3+4=7", "=",
         "*", "+", "8", "48", ",", ".", "2", "7735", "User:", "Assistant:")
_PADDING = " I say it again and again."
def general_prompt(kind: str, name: str, item: str) -> str:
    return _PROMPTS[kind].format(name=name, item=item)


def write_reply(kind: str, name: str, item: str, quality: str, problem: str = "3 + 4 * 5") -> str:
    """The reply text (no tags) of one quality: good (polite, concise), rude, verbose (good + padding), off_topic
    (an arithmetic fact), junk (fragments of tags and arithmetic, or letter soup, seeded by `problem`; possibly
    empty), garbled (the good reply with a few characters changed, seeded by `problem`)."""
    if quality == "good":
        return _GOOD[kind]
    if quality == "rude":
        return _RUDE[kind]
    if quality == "verbose":
        return _GOOD[kind] + _PADDING
    if quality == "off_topic":
        return f"{problem} is {eval_plain(problem)}."
    if quality == "junk":  # what an untrained policy writes: fragments of tags and arithmetic, or letter soup
        rng = random.Random(problem)
        if rng.random() < 0.5:
            return " ".join(rng.choice(_JUNK) for _ in range(rng.randrange(0, 10)))
        return "".join(rng.choice("abcdefghiklmnoprstuwy    .,!?") for _ in range(rng.randrange(1, 30)))
    if quality == "garbled":  # the good reply with 1-4 characters replaced or dropped: a near miss is not it
        rng, chars = random.Random(problem), list(_GOOD[kind])
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(chars))
            chars[i] = rng.choice("abcdefghiklmnoprstuwy .!") if rng.random() < 0.7 else ""
        out = "".join(chars)
        return out if out != _GOOD[kind] else out[:-1]
    raise ValueError(f"unknown reply quality {quality!r}; valid: {', '.join(QUALITIES)}")


def eval_plain(problem: str) -> int:
    """'a op b op c' with precedence, for the off-topic replies (digits and + - * only, never Python eval).

    >>> eval_plain("3 + 4 * 5"), eval_plain("9 - 2 - 3")
    (23, 4)
    """
    a, op1, b, op2, c = problem.split()
    vals, ops = [int(a), int(b), int(c)], [op1, op2]
    if ops[1] == "*" and ops[0] != "*":
        vals[1:] = [vals[1] * vals[2]]
        ops = ops[:1]
    out = vals[0]
    for op, v in zip(ops, vals[1:]):
        out = out + v if op == "+" else out - v if op == "-" else out * v
    return out


def in_format(reply: str, style: int) -> str:
    """A reply as a completion of the R1 template: 0 `<think> … </think> <answer> reply </answer>`, 1 the answer tag
    only, 2 the bare reply (leading space: completions follow the prompt's "Assistant:").

    >>> in_format("Hi!", 0), in_format("Hi!", 2)
    (' <think> be kind and brief </think> <answer> Hi! </answer>', ' Hi!')
    """
    return (" <think> be kind and brief </think> <answer> {r} </answer>", " <answer> {r} </answer>", " {r}")[style] \
        .format(r=reply)


def _all_prompts() -> list[tuple[str, str, str]]:
    out = []
    for kind in KINDS:
        for name in NAMES:
            for item in (ITEMS if "{item}" in _PROMPTS[kind] else ("",)):
                out.append((kind, name, item))
    return out  # 2 * 16 + 2 * 16 * 8 = 288 distinct prompts


TRAIN_PROMPTS, TEST_PROMPTS = 216, 72  # of the 288 distinct prompts: the fixed split every user shares


def general_split(num_train: int = TRAIN_PROMPTS, num_test: int = TEST_PROMPTS, seed: int = 0
                  ) -> tuple[list[tuple], list[tuple]]:
    """(train, test) (kind, name, item) triples: the first `num_train` of the 216 training prompts and the first
    `num_test` of the 72 test prompts of the split drawn by `seed` (so the reward model's held-out prompts are the
    policy's test prompts whatever each asks for); ValueError beyond 216 / 72."""
    if num_train > TRAIN_PROMPTS or num_test > TEST_PROMPTS:
        raise ValueError(f"the general prompts split {TRAIN_PROMPTS} train / {TEST_PROMPTS} test, asked for "
                         f"{num_train} / {num_test}")
    triples = _all_prompts()
    random.Random(seed).shuffle(triples)
    return triples[:num_train], triples[TRAIN_PROMPTS:TRAIN_PROMPTS + num_test]


def general_rows(triples: list[tuple]) -> list[dict]:
    return [{"prompt": general_prompt(*t), "answer": "", "task": "general"} for t in triples]


def general_dataset(num_train: int, num_test: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    train, test = general_split(num_train, num_test, seed)
    return general_rows(train), general_rows(test)


def mixed_dataset(num_train: int, num_test: int, seed: int = 0, general_frac: float = 0.5
                  ) -> tuple[list[dict], list[dict]]:
    """Arithmetic (`task: arithmetic`) and general (`task: general`) rows, `general_frac` of each split general
    (capped at 216 train and 72 test: 288 general prompts exist), shuffled by `seed`."""
    n_gen_train = min(round(num_train * general_frac), TRAIN_PROMPTS)
    n_gen_test = min(round(num_test * general_frac), TEST_PROMPTS)
    gen_train, gen_test = general_dataset(n_gen_train, n_gen_test, seed)
    # the arithmetic test rows are the first of procedural:arithmetic's test split with the same num_test and seed,
    # and the training rows come after all of those: never one of them
    ar_train, ar_test = arithmetic_dataset(num_train - n_gen_train, num_test, seed=seed)
    ar_test = ar_test[:num_test - n_gen_test]
    rng = random.Random(seed + 7)
    train = [{**r, "task": "arithmetic"} for r in ar_train] + gen_train
    test = [{**r, "task": "arithmetic"} for r in ar_test] + gen_test
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def preference_pairs(triples: list[tuple], num: int, seed: int) -> list[dict]:
    """`num` pairs {prompt, chosen, rejected, rejected_quality}: chosen the good reply, rejected one of the three worse qualities;
    both in the same completion style (in_format), so only the reply's quality tells them apart."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(num):
        kind, name, item = rng.choice(triples)
        worse = rng.choice(QUALITIES[1:])
        style = rng.randrange(3)
        problem = f"{rng.randint(1, 9)} {rng.choice('+-')} {rng.randint(1, 9)} * {rng.randint(1, 9)}"
        pairs.append({"prompt": general_prompt(kind, name, item),
                      "chosen": in_format(write_reply(kind, name, item, "good"), style),
                      "rejected": in_format(write_reply(kind, name, item, worse, problem), style),
                      "rejected_quality": worse})
    return pairs
