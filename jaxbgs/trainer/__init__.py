"""The BGS trainer: setup (data, model), the pure train step, the loop, evaluation and the demo."""
