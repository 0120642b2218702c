"""The reasons a job's status gives (``status.reason``): one vocabulary for every backend.

No torch here: the operator (TrainingJob status) and the API's local backend (subprocess
exits) both import it, so a client sees the same reason for the same cause whichever
backend ran the job. Kubernetes' own reasons (ImagePullBackOff, Unschedulable, a Job
condition's reason) are passed through verbatim and are not listed here.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # pending
    creating = "Creating"  # the Job is being created
    job_created = "JobCreated"  # the Job exists, its pod does not yet
    starting = "Starting"  # the pod is being scheduled / pulled / started
    suspended = "Suspended"
    queued = "Queued"  # waiting for Kueue to admit the Job
    retrying = "Retrying"  # an attempt failed, the next one is coming
    pod_creation_failed = "PodCreationFailed"  # the Job controller's FailedCreate (quota, admission, ...)
    # running / completed / cancelled
    running = "Running"
    cancel_requested = "CancelRequested"  # spec.cancel seen: the trainer is checkpointing and stopping
    completed = "Completed"
    cancelled = "Cancelled"
    # failed
    startup_timeout = "StartupTimeout"
    trainer_config_error = "TrainerConfigError"  # exit code 3: no retry can fix it
    trainer_failed = "TrainerFailed"  # a nonzero exit, no more retries
    trainer_not_started = "TrainerNotStarted"  # local backend: the trainer process could not start
    oom_killed = "OOMKilled"
    killed = "Killed"  # killed by a signal nobody asked for
    preempted = "Preempted"  # exit 75 without a retry to resume it
    deadline_exceeded = "DeadlineExceeded"
    backoff_limit_exceeded = "BackoffLimitExceeded"
    job_deleted = "JobDeleted"
    process_lost = "ProcessLost"  # local backend: the trainer was gone after a restart
    invalid_spec = "InvalidSpec"
    reconcile_error = "ReconcileError"
    failed = "Failed"
