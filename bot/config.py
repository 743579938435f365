"""Settings: defaults, then a TOML file, then `MIAOHUA_BOT_*` environment variables (later wins)."""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.store.database import is_postgresql

DEFAULT_BASE_URL = "https://miaohua.sensetime.com/api/v1b"
CONFIG_ENV_VAR = "MIAOHUA_BOT_CONFIG"
DEFAULT_CONFIG_FILE = Path("config.toml")

_config_file: ContextVar[Path | None] = ContextVar("config_file", default=None)


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class DiscordSettings(_Section):
    token: SecretStr | None = None
    api_base_url: str | None = None
    gateway_url: str | None = None
    dev_guild_id: int | None = None
    sync_commands: bool = True
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: list[int] | None = None
    # Seconds to keep retrying at start-up while Discord cannot be reached (0: try once).
    connect_retry: float = Field(default=300.0, ge=0)
    # Bot-token REST requests per second, under Discord's global limit of 50 (per process:
    # processes sharing one token split it).
    requests_per_second: int = Field(default=45, ge=1)
    # Add 🔁 under each posted result, so reacting to rerun is one click. Off by default:
    # each one is a request under Discord's strictest route limit (one reaction per 0.25 s
    # per channel), and a result already has a Rerun button and lists its reactions.
    rerun_reaction: bool = False

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("gateway_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @model_validator(mode="after")
    def _shards_fit(self) -> DiscordSettings:
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("shard_ids needs shard_count")
            if any(not 0 <= i < self.shard_count for i in self.shard_ids):
                raise ValueError("shard_ids must be between 0 and shard_count - 1")
        return self


class EmulatorSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    generation_time: float = Field(default=3.0, gt=0)
    training_time: float = Field(default=60.0, gt=0)
    workers: int = Field(default=4, ge=1)


class MiaohuaSettings(_Section):
    base_url: str = DEFAULT_BASE_URL
    emulator: bool = False
    request_timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    requests_per_second: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    retry_budget: float = Field(default=20.0, gt=0)
    max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    account_concurrency: int = Field(default=2, ge=1)
    busy_backoff: float = Field(default=5.0, gt=0)
    poll_strategy: Literal["adaptive", "fixed"] = "adaptive"
    poll_interval: float = Field(default=1.0, gt=0)
    expected_generation_time: float = Field(default=3.0, gt=0)
    use_batch: bool = True
    batch_poll_interval: float = Field(default=0.5, gt=0)
    task_timeout: float = Field(default=600.0, gt=0)
    training_timeout: float = Field(default=6 * 3600.0, gt=0)
    training_poll_interval: float = Field(default=15.0, gt=0)
    training_progress_edit_interval: float = Field(default=30.0, gt=0)
    form_cache_ttl: float = Field(default=600.0, gt=0)
    warm_forms: bool = True
    embedded: EmulatorSection = EmulatorSection()

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class StorageSettings(_Section):
    path: Path = Path("data/miaohua-bot.sqlite3")
    # Where the state lives when not in `path`: `sqlite:///file` or `postgresql://...`.
    # Secret: a PostgreSQL URL may carry a password.
    url: SecretStr | None = None
    staging_dir: Path = Path("data/staging")
    # Finished tasks are deleted this many days after their last change (fractions allowed).
    retention_days: float = Field(default=90.0, gt=0, le=36500)

    @field_validator("url")
    @classmethod
    def _known_database(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            text = url.get_secret_value()
            if not is_postgresql(text) and not text.startswith("sqlite:///"):
                raise ValueError("must start with sqlite:/// or postgresql://")
        return url

    @property
    def database(self) -> str | Path:
        """The database the bot keeps its state in: `url` when set, else the file `path`."""
        return self.url.get_secret_value() if self.url is not None else self.path

    @property
    def shared(self) -> bool:
        """True when the state is in a database server that several processes may share."""
        return is_postgresql(self.database)


class SecuritySettings(_Section):
    secret_key: SecretStr | None = None
    key_file: Path = Path("data/secret.key")


# Old setting names still accepted (with a warning at start-up): old name -> new name.
_RENAMED_LIMITS = {"user_concurrency": "user_running"}


class LimitsSettings(_Section):
    prompt_length: int = Field(default=1000, ge=1)
    attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    attachment_pixels: int = Field(default=4096 * 4096, ge=1)
    user_running: int = Field(default=2, ge=1)  # a member's tasks at the service at once
    user_queued: int = Field(default=10, ge=0)  # a member's tasks waiting beyond those
    daily_quota: int | None = Field(default=50, ge=0)  # 0: unlimited, as in /settings
    rerun_cooldown: float = Field(default=5.0, ge=0)
    repost_cooldown: float = Field(default=60.0, ge=0, le=86_400)
    download_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    training_concurrency: int = Field(default=1, ge=1)
    archive_files: int = Field(default=50, ge=1)
    archive_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    archive_file_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    training_images_min: int = Field(default=3, ge=1)
    # Old names this section was given, as (old, new); `deprecation_warnings` reports them.
    _renamed: tuple[tuple[str, str], ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _accept_old_names(
        cls, data: Any, handler: ModelWrapValidatorHandler[LimitsSettings]
    ) -> LimitsSettings:
        """Read an old name as its new one, so an operator's existing file keeps working."""
        renamed: list[tuple[str, str]] = []
        if isinstance(data, dict):
            data = dict(data)
            for old, new in _RENAMED_LIMITS.items():
                if old not in data:
                    continue
                if new in data:
                    raise ValueError(f"{old} is the old name of {new}: set only {new}")
                data[new] = data.pop(old)
                renamed.append((old, new))
        limits = handler(data)
        limits._renamed = tuple(renamed)
        return limits


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["plain", "json"] = "plain"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class MetricsSettings(_Section):
    # None: no metrics server. Loopback by default: /metrics tells anyone who can reach it
    # how busy the bot is; expose it wider only behind a firewall or a proxy.
    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = Field(default="127.0.0.1", min_length=1)


class Settings(BaseSettings):
    """Every setting of the bot, one nested model per section."""

    model_config = SettingsConfigDict(
        env_prefix="MIAOHUA_BOT_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    discord: DiscordSettings = DiscordSettings()
    miaohua: MiaohuaSettings = MiaohuaSettings()
    storage: StorageSettings = StorageSettings()
    security: SecuritySettings = SecuritySettings()
    limits: LimitsSettings = LimitsSettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line naming the key and the problem."""


def resolve_config_path(explicit: str | Path | None) -> Path | None:
    """Pick the TOML file: `--config`, else $MIAOHUA_BOT_CONFIG, else ./config.toml if present."""
    if explicit:
        path = Path(explicit)
    elif os.environ.get(CONFIG_ENV_VAR):
        path = Path(os.environ[CONFIG_ENV_VAR])
    elif DEFAULT_CONFIG_FILE.is_file():
        return DEFAULT_CONFIG_FILE
    else:
        return None
    if not path.is_file():
        raise ConfigError(f"config file {path}: not found")
    return path


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load the effective settings, raising ConfigError with a one-line explanation."""
    path = resolve_config_path(config_path)
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except ValueError as exc:  # TOML syntax, or an environment value that is not valid JSON
        from_env = path is None or "EnvSettingsSource" in str(exc)
        where = "MIAOHUA_BOT_* environment" if from_env else f"config file {path}"
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{where}: {first_line}") from None
    finally:
        _config_file.reset(token)


def _describe(exc: ValidationError, path: Path | None) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "(root)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    where = f" (from {path} or MIAOHUA_BOT_* environment)" if path else ""
    more = f"; and {exc.error_count() - 1} more problem(s)" if exc.error_count() > 1 else ""
    return f"invalid setting {key}: {message}{where}{more}"


def deprecation_warnings(settings: Settings) -> list[str]:
    """One line per old setting name in use, naming the new one to write instead."""
    return [
        f"setting limits.{old} is deprecated: it was read as limits.{new}; rename it"
        for old, new in settings.limits._renamed
    ]


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, every secret shown as '********' (or unset)."""
    return _mask(settings)


def _mask(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            out[name] = "********"
        elif isinstance(value, BaseModel):
            out[name] = _mask(value)
        elif isinstance(value, Path):
            out[name] = str(value)
        else:
            out[name] = value
    return out
