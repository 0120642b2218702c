"""Exit codes of ``laxai-train run``: the contract with the operator's podFailurePolicy.

No torch here: the operator imports these to build the Job's podFailurePolicy.
"""

#: Training finished (completed or stopped early).
OK = 0
#: Unexpected error (a bug, a data problem found mid-run): retried up to backoffLimit.
FAILURE = 1
#: Bad configuration or input that no retry can fix (invalid config, no data,
#: too few players): the Job fails at once. The message is in the termination log.
CONFIG_ERROR = 3
#: Preempted (SIGTERM): a checkpoint was written; "retry me" — the retry resumes.
RETRY = 75  # EX_TEMPFAIL
