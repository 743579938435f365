"""Why a training job failed: the codes stored in `Training.error`, shown as `train.reason.*`."""

from __future__ import annotations

from enum import StrEnum


class TrainingFailReason(StrEnum):
    """Reason codes stored in `Training.error` when a training job fails."""

    NO_ACCOUNT = "no_account"
    ACCOUNT_INVALID = "account_invalid"
    NOT_ENOUGH_POINTS = "not_enough_points"
    RESPONSE_TOO_LARGE = "response_too_large"
    INVALID_REQUEST = "invalid_request"
    SERVICE_ERROR = "service_error"
    # The bot's own side of a job.
    IMAGES_NOT_SAVED = "images_not_saved"  # staging the images failed when the job was created
    STAGING_LOST = "staging_lost"  # the staged images vanished before they were uploaded
    SUBMIT_UNCERTAIN = "submit_uncertain"  # restarted while submitting: never submitted twice
    # A step at the service.
    UPLOAD_FAILED = "upload_failed"
    DATASET_FAILED = "dataset_failed"
    TRAINING_FAILED = "training_failed"
    TIMEOUT = "timeout"
