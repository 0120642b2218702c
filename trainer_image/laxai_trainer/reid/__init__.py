"""The re-identification core by concern: data, models, losses, engine, metrics; the runtime
around it (job, CLI, storage, sync, reporting, the contract) stays in laxai_trainer."""
