"""CI guardrail: budgets files, budget evaluation, baselines and model diffs."""
