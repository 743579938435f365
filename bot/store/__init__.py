"""Persistent state of the bot in SQLite; knows nothing of Discord or the v1b client."""

from bot.store.accounts import AccountRepo, GuildAccount, RunningWork
from bot.store.datasets import Dataset, DatasetRepo
from bot.store.errors import ConstraintViolation, StoreUnavailable
from bot.store.migrate import Migration, MigrationError, load_migrations, migrate, schema_version
from bot.store.models import ModelRepo, TrainedModel
from bot.store.preferences import MemberPreferences, PreferencesRepo
from bot.store.retry import until_stored
from bot.store.settings import SETTING_NAMES, GuildSettings, SettingsRepo
from bot.store.store import Store
from bot.store.styles import Style, StyleRepo
from bot.store.tasks import ACTIVE_TASK_STATES, Task, TaskRepo, TaskState
from bot.store.trainings import (
    FINISHED_TRAINING_STATES,
    UPDATABLE_TRAINING_FIELDS,
    Training,
    TrainingRepo,
    TrainingState,
)
from bot.store.usage import UsageRepo

__all__ = [
    "ACTIVE_TASK_STATES",
    "FINISHED_TRAINING_STATES",
    "SETTING_NAMES",
    "UPDATABLE_TRAINING_FIELDS",
    "AccountRepo",
    "ConstraintViolation",
    "Dataset",
    "DatasetRepo",
    "GuildAccount",
    "GuildSettings",
    "MemberPreferences",
    "Migration",
    "MigrationError",
    "ModelRepo",
    "PreferencesRepo",
    "RunningWork",
    "SettingsRepo",
    "Store",
    "StoreUnavailable",
    "Style",
    "StyleRepo",
    "Task",
    "TaskRepo",
    "TaskState",
    "TrainedModel",
    "Training",
    "TrainingRepo",
    "TrainingState",
    "UsageRepo",
    "load_migrations",
    "migrate",
    "schema_version",
    "until_stored",
]
