"""The re-identification core, by concern (data, ...); the runtime around it stays in laxai_trainer."""
