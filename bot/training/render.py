"""Text of the training progress message."""

from __future__ import annotations

from bot.i18n import t
from bot.store.trainings import Training, TrainingState

BAR_WIDTH = 20
ESTIMATE_AFTER = 0.05  # below this the rate is too noisy to promise anything


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """'▓▓▓░░░' with `width` cells."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "▓" * filled + "░" * (width - filled)


def duration(seconds: float) -> str:
    """'1h 02m', '3m 05s' or '12s'."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def progress_text(
    training: Training,
    locale: str,
    now: float,
    remaining: float | None = None,
    *,
    name: str | None = None,
) -> str:
    """The progress message: name, bar, percentage, state, elapsed and remaining time.

    `name` is the training's name as the caller's medium shows it (escaped for Discord).
    """
    state = t(f"train.state.{training.state.value}", locale)
    lines = [
        t("train.progress.title", locale, id=training.id, name=name or training.name),
        f"`{progress_bar(training.progress)}` {training.progress * 100:.0f}%",
        t("train.progress.state", locale, state=state),
        t("train.progress.elapsed", locale, elapsed=duration(now - training.created_at)),
    ]
    shows_estimate = training.state is TrainingState.TRAINING and training.progress > ESTIMATE_AFTER
    if shows_estimate and remaining is not None:
        lines.append(t("train.progress.remaining", locale, remaining=duration(remaining)))
    if training.state is TrainingState.FAILED:
        lines.append(t(f"train.reason.{training.error or 'unknown'}", locale))
    return "\n".join(lines)
