"""Training: the torch model, its evaluation and its fairness report, with blocking gates."""
