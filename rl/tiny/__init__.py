"""The miniature world: a tokenizer, small decoders and a partially skilled "base model", all built offline."""
