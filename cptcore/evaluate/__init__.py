"""Evaluators (one module each) and how they run.

perplexity.py (domain_ppl, replay_ppl), knowledge_qa.py, ifeval.py, coherence.py: the evaluators;
generate.py: batched greedy generation they share; stats.py: n, 95% CIs, paired differences;
suite.py: run evaluators by name on a model; callback.py: EvalCallback for training runs;
standalone.py: `cpt eval` on any model, folder or run.
"""
