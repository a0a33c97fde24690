"""Datasets as canonical {prompt, answer} examples, prompt templates, and procedural task generators."""
