"""The training loop and the state a run resumes from."""
