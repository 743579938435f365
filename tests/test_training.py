"""/train, /datasets, /models end to end: fake Discord, the emulator and the real bot."""

from __future__ import annotations

import asyncio
import io
import re
import zipfile
from typing import Any

import pytest

from bot.emulator import errors as emu_errors
from bot.store.trainings import TrainingState
from tests.conftest import ADMIN_A, CH_A, GUILD_A, MEMBER_A, NSFW_A
from tests.helpers import answer_text, message_text, png_bytes

# Training end to end, on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends()

COLORS = ("red", "green", "blue", "orange", "purple", "teal", "gold", "navy", "pink", "gray")


def images(harness: Any, n: int) -> dict[str, dict]:
    """n distinct attachment options image1..imageN."""
    return {
        f"image{i + 1}": harness.fake.add_attachment(
            png_bytes(48, 48, COLORS[i % len(COLORS)]), f"img{i}.png", "image/png"
        )
        for i in range(n)
    }


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


async def train(harness: Any, user: int = ADMIN_A, channel: int = CH_A, **options: Any) -> str:
    attachments = options.pop("attachments", {})
    options.setdefault("name", "Ink Style")
    ix = await harness.fake.slash(
        "train",
        user_id=user,
        guild_id=GUILD_A,
        channel_id=channel,
        options=options,
        attachments=attachments,
    )
    return await answer_text(ix)


async def wait_state(harness: Any, training_id: int, *states: str, timeout: float = 10) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        training = await harness.bot.store.trainings.get(training_id)
        if training is not None and training.state in states:
            return training
        assert asyncio.get_running_loop().time() < deadline, f"state stayed {training.state}"
        await asyncio.sleep(0.02)


def posted(harness: Any, word: str) -> dict:
    """The JSON body of the bot's channel post containing word."""
    return next(
        r.json
        for r in harness.fake.requests
        if r.method == "POST"
        and r.path == f"/channels/{CH_A}/messages"
        and word in (r.json or {}).get("content", "")
    )


def announcement(harness: Any, word: str):
    return harness.fake.wait_for_message(CH_A, lambda m: word in (m.get("content") or ""))


async def test_training_from_attachments_end_to_end(harness_factory):
    harness = await harness_factory(miaohua={"training_progress_edit_interval": 0.2})
    text = await train(harness, attachments=images(harness, 7), trigger_word="inkstyle")
    assert "#1" in text and "7" in text
    done = await announcement(harness, "is ready")
    assert f"<@{ADMIN_A}>" in done["content"] and "Ink_Style" in done["content"]
    assert posted(harness, "is ready")["allowed_mentions"]["users"] == [ADMIN_A]
    training = await wait_state(harness, 1, TrainingState.DONE)
    assert training.model_name == "Ink_Style" and len(training.uploaded_urls) == 7
    calls = harness.emu.state.calls
    assert calls["upload_imgs"] == 2 and calls["dataset"] == 1 and calls["train_submit"] == 1
    (dataset,) = harness.emu.state.datasets.values()
    assert dataset.name == "Ink Style-1" and len(dataset.images) == 7
    model = await harness.bot.store.models.get(GUILD_A, "Ink_Style")
    assert model.trigger_word == "inkstyle" and model.trained_by == ADMIN_A
    assert await harness.bot.store.datasets.get(GUILD_A, str(dataset.dataset_id))
    # The progress message shows the final state; staged files are gone.
    progress = harness.fake.message(training.progress_message_id)
    assert "100%" in progress["content"] and "done" in progress["content"]
    assert not (harness.settings.storage.staging_dir / "1").exists()
    # The trained model is offered by /imagine's model autocomplete.
    choices = await harness.fake.autocomplete(
        "imagine",
        focused="model",
        options={"prompt": "x", "model": "Ink"},
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    assert "Ink_Style" in [c["value"] for c in choices]
    # /models lists it with its trigger word and trainer.
    ix = await harness.fake.slash("models", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A)
    listed = await answer_text(ix)
    assert "Ink_Style" in listed and "inkstyle" in listed and f"<@{ADMIN_A}>" in listed
    # The sample button queues a generation with the trained model and trigger word.
    click = await harness.fake.click(
        done, "mh:sample:1", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert "queued" in await answer_text(click)
    task = (await harness.bot.store.tasks.recent(GUILD_A, limit=1))[0]
    assert task.model == "Ink_Style" and task.prompt == "inkstyle" and task.user_id == MEMBER_A


async def test_training_from_archive_skips_non_images(harness):
    files = {f"set/pic{i}.png": png_bytes(40, 40, COLORS[i]) for i in range(4)}
    files["set/readme.txt"] = b"not an image"
    archive = harness.fake.add_attachment(zip_bytes(files), "set.zip", "application/zip")
    text = await train(harness, name="Zip Set", attachments={"archive": archive})
    assert "4 new images" in text and "readme.txt" in text
    await announcement(harness, "is ready")
    training = await wait_state(harness, 1, TrainingState.DONE)
    assert len(training.uploaded_urls) == 4


async def test_restart_during_upload_resumes_without_duplicates(harness):
    harness.emu.state.settings.faults.latency = 0.3
    await train(harness, attachments=images(harness, 10))
    training = await wait_state(harness, 1, TrainingState.UPLOADING)
    deadline = asyncio.get_running_loop().time() + 5
    while not training.uploaded_urls:  # first batch persisted, second one in flight
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
        training = await harness.bot.store.trainings.get(1)
    assert len(training.pending_images) == 5
    await harness.kill()
    harness.emu.state.settings.faults.latency = 0.0
    training = await wait_state(harness, 1, TrainingState.DONE)
    assert len(training.uploaded_urls) == 10
    assert harness.emu.state.calls["dataset"] == 1
    assert harness.emu.state.calls["train_submit"] == 1


async def stored_training(harness: Any, state: str, **fields: Any) -> Any:
    """A job persisted directly in `state`, as a crash would have left it."""
    store = harness.bot.store
    account = await store.accounts.get(GUILD_A)
    training = await store.trainings.create(
        guild_id=GUILD_A,
        channel_id=CH_A,
        user_id=ADMIN_A,
        name="Crashed",
        main_body="Style",
        base_model="",
        trigger_word="crash",
        account_id=account.id,
    )
    return await store.trainings.set_state(training.id, state, ("uploading",), **fields)


async def upload_urls(harness: Any, n: int) -> list[str]:
    session = await harness.bot.accounts.session_for(GUILD_A)
    files = [(f"{i}.png", png_bytes(32, 32, COLORS[i]), "image/png") for i in range(n)]
    return await session.upload_images(files)


async def test_crash_after_dataset_created_reuses_it(harness):
    urls = await upload_urls(harness, 3)
    training = await stored_training(harness, "creating_dataset", uploaded_urls=urls)
    # The service created the dataset, but the bot died before recording it.
    created = harness.emu.state.add_dataset("a@guild.test", f"Crashed-{training.id}", "", urls)
    await harness.restart()
    done = await wait_state(harness, training.id, TrainingState.DONE)
    assert done.dataset_ids == (str(created.dataset_id),)
    assert harness.emu.state.calls["dataset"] == 0
    assert harness.emu.state.calls["train_submit"] == 1
    assert len(harness.emu.state.datasets) == 1


async def test_crash_while_submitting_is_not_submitted_twice(harness):
    urls = await upload_urls(harness, 3)
    dataset = harness.emu.state.add_dataset("a@guild.test", "Crashed-1", "", urls)
    training = await stored_training(
        harness, "submitting", uploaded_urls=urls, dataset_ids=[dataset.dataset_id]
    )
    await harness.restart()
    failed = await wait_state(harness, training.id, TrainingState.FAILED)
    assert failed.error == "submit_uncertain"
    assert harness.emu.state.calls["train_submit"] == 0
    note = await announcement(harness, f"<@{ADMIN_A}> training")
    assert "not submitted again" in note["content"]


async def test_training_polls_on_the_bots_one_poll_loop(harness):
    harness.emu.state.settings.training_time = 0.5
    await train(harness, attachments=images(harness, 3))
    training = await wait_state(harness, 1, TrainingState.DONE)
    assert training.model_name == "Ink_Style"
    # The generation poller's loop runs training's polls: once the job is done, the training
    # service runs no task of its own (only a round's per-guild polls may be finishing).
    codes = [getattr(task.get_coro(), "cr_code", None) for task in asyncio.all_tasks()]
    running = {code.co_qualname for code in codes if code is not None}
    own = {name for name in running if name.startswith("TrainingService.")}
    assert own <= {"TrainingService._poll_guild"}, own
    assert "Poller.run" in running


async def test_kill_during_training_resumes_polling(harness):
    harness.emu.state.settings.training_time = 1.5
    await train(harness, attachments=images(harness, 3))
    await wait_state(harness, 1, TrainingState.TRAINING)
    await harness.kill()
    training = await wait_state(harness, 1, TrainingState.DONE)
    assert training.model_name == "Ink_Style"
    assert harness.emu.state.calls["train_submit"] == 1
    assert harness.emu.state.calls["dataset"] == 1


async def test_upload_failure_is_reported(harness, monkeypatch):
    def reject(*args: Any, **kwargs: Any) -> None:
        raise emu_errors.InvalidInput("invalid image")

    monkeypatch.setattr(harness.emu.state, "add_upload", reject)
    await train(harness, attachments=images(harness, 3))
    note = await announcement(harness, f"<@{ADMIN_A}> training")
    assert "could not be uploaded" in note["content"] and f"<@{ADMIN_A}>" in note["content"]
    training = await wait_state(harness, 1, TrainingState.FAILED)
    assert training.error == "upload_failed"
    assert not (harness.settings.storage.staging_dir / "1").exists()


async def test_dataset_failure_is_reported(harness, monkeypatch):
    def reject(*args: Any, **kwargs: Any) -> None:
        raise emu_errors.InvalidInput("invalid image")

    monkeypatch.setattr(harness.emu.state, "add_dataset", reject)
    await train(harness, attachments=images(harness, 3))
    note = await announcement(harness, f"<@{ADMIN_A}> training")
    assert "could not create the dataset" in note["content"] and "invalid image" in note["content"]
    assert (await wait_state(harness, 1, TrainingState.FAILED)).error == "dataset_failed"
    assert harness.emu.state.calls["train_submit"] == 0


async def test_bad_archives_are_refused_with_a_reason(harness_factory):
    harness = await harness_factory(limits={"archive_files": 5, "archive_bytes": 300_000})
    cases = {
        "too many": (zip_bytes({f"{i}.png": png_bytes() for i in range(6)}), "6 files"),
        "traversal": (zip_bytes({"../../etc/x.png": png_bytes()}), "unsafe file name"),
        "absolute": (zip_bytes({"/abs/x.png": png_bytes()}), "unsafe file name"),
        "nested": (zip_bytes({"inner.zip": zip_bytes({"a.png": png_bytes()})}), "another"),
        "bomb": (zip_bytes({"zeros.png": b"\0" * 400_000}), "MB"),
        "texts": (zip_bytes({f"{i}.txt": b"hello" for i in range(3)}), "at least 3 images"),
    }
    for label, (data, expected) in cases.items():
        archive = harness.fake.add_attachment(data, "set.zip", "application/zip")
        text = await train(harness, name=f"Set {label}", attachments={"archive": archive})
        assert expected in text, (label, text)
    assert await harness.bot.store.trainings.recent(GUILD_A) == []
    assert harness.emu.state.calls["upload_imgs"] == 0
    assert not any(harness.settings.storage.staging_dir.glob("*/*"))


async def test_refusals_permission_nsfw_name_and_images(harness):
    three = images(harness, 3)
    assert "Manage Server" in await train(harness, user=MEMBER_A, attachments=three)
    assert "age-restricted" in await train(harness, nsfw=True, attachments=three)
    assert "2 to 40" in await train(harness, name="x", attachments=three)
    assert "letters, digits" in await train(harness, name="bad/name", attachments=three)
    assert "at least 3" in await train(harness, attachments=images(harness, 2))
    bad = harness.fake.add_attachment(b"plain text", "notes.png", "image/png")
    assert "notes.png" in await train(harness, attachments={**three, "image4": bad})
    assert await harness.bot.store.trainings.recent(GUILD_A) == []
    # Allowed in an age-restricted channel, then the name is taken while it runs.
    text = await train(harness, channel=NSFW_A, nsfw=True, attachments=three)
    assert "#1" in text
    assert "already" in await train(harness, name="ink style", attachments=three)


async def test_datasets_lists_every_page(harness):
    for i in range(23):
        harness.emu.state.add_dataset("a@guild.test", f"set-{i:02d}", "", [f"http://x/{i}.png"])
    ix = await harness.fake.slash("datasets", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A)
    text = await answer_text(ix)
    assert "(23)" in text and "set-00" in text and "set-22" in text
    assert harness.emu.state.calls["dataset_all"] == 2


async def test_models_empty_and_progress_message_posted(harness):
    ix = await harness.fake.slash("models", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A)
    assert "No models" in await answer_text(ix)
    await train(harness, attachments=images(harness, 3))
    first = await harness.fake.wait_for_message(CH_A, lambda m: "Training #1" in m["content"])
    assert "░" in first["content"]
    assert posted(harness, "Training #1")["allowed_mentions"]["parse"] == []
    assert message_text(first)


async def test_status_shows_training_jobs_with_progress(harness):
    harness.emu.state.settings.training_time = 30
    await train(harness, attachments=images(harness, 3))
    training = await wait_state(harness, 1, TrainingState.TRAINING)
    while training.progress <= 0:
        await asyncio.sleep(0.05)
        training = await harness.bot.store.trainings.get(1)
    ix = await harness.fake.slash("status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A)
    text = await answer_text(ix)
    assert "Trainings" in text and "#1 **Ink Style**" in text
    assert re.search(r"#1 \*\*Ink Style\*\* · [^\n]* \d+%", text), text
    ix = await harness.fake.slash("status", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A)
    assert "Ink Style" not in await answer_text(ix)  # members see only their own


async def test_trainer_role_may_train_and_concurrent_trainings_are_limited(harness):
    from tests.conftest import TRAINER_ROLE_A

    harness.emu.state.settings.training_time = 30
    await harness.bot.store.settings.update(GUILD_A, trainer_role_id=TRAINER_ROLE_A)
    harness.fake.add_member(GUILD_A, 3010, "trainer", roles=[TRAINER_ROLE_A])
    assert "#1" in await train(harness, user=3010, attachments=images(harness, 3))
    busy = await train(harness, name="Second Style", attachments=images(harness, 3))
    assert "already runs 1 training" in busy
    assert [t.name for t in await harness.bot.store.trainings.recent(GUILD_A)] == ["Ink Style"]


async def test_training_from_an_existing_dataset(harness):
    await train(harness, attachments=images(harness, 3))
    first = await wait_state(harness, 1, TrainingState.DONE, timeout=20)
    dataset_id = first.dataset_ids[0]
    text = await train(harness, name="Again Style", datasets=str(dataset_id))
    assert "#2" in text
    second = await wait_state(harness, 2, TrainingState.DONE, timeout=20)
    assert tuple(second.dataset_ids) == (dataset_id,)
    assert harness.emu.state.calls["dataset"] == 1  # no new dataset for the second
    assert "do not exist" in await train(harness, name="Nope Style", datasets="99999")


async def test_another_guild_sees_neither_models_nor_samples(harness):
    from tests.conftest import ADMIN_B, CH_B, GUILD_B

    await train(harness, attachments=images(harness, 3))
    await wait_state(harness, 1, TrainingState.DONE, timeout=20)
    ix = await harness.fake.slash("models", user_id=ADMIN_B, guild_id=GUILD_B, channel_id=CH_B)
    assert "Ink_Style" not in await answer_text(ix)
    # The announcement with the sample button is posted just after the state turns done.
    note = await harness.fake.wait_for_message(
        CH_A,
        lambda m: any(c.get("custom_id", "").startswith("mh:sample:")
                      for row in m.get("components") or [] for c in row["components"]),
    )  # fmt: skip
    ix = await harness.fake.click(
        note, "mh:sample:1", user_id=ADMIN_B, guild_id=GUILD_B, channel_id=CH_B
    )
    await answer_text(ix)
    assert await harness.bot.store.tasks.recent(GUILD_B) == []


@pytest.mark.slow
async def test_training_form_autocomplete_answers_within_discords_window(harness):
    async def choices(focused: str, typed: str) -> list[str]:
        found = await harness.fake.autocomplete(
            "train", focused=focused, options={"name": "x", focused: typed},
            user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A,
        )  # fmt: skip
        return [c["value"] for c in found]

    assert await choices("main_body", "hu") == ["Human"]
    harness.bot.forms.invalidate(GUILD_A)
    harness.emu.state.settings.faults.latency = 3.0  # slower than Discord waits
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await choices("base_model", "") == []
    assert loop.time() - started < 3.0
    harness.emu.state.settings.faults.latency = 0.0


async def test_the_training_service_itself_refuses_unknown_datasets(harness):
    from bot.errors import UserFacingError
    from bot.training import TrainingRequest

    request = TrainingRequest(
        guild_id=GUILD_A, channel_id=CH_A, user_id=ADMIN_A, name="Nope Style",
        main_body="Style", base_model=None, trigger_word="", description="", nsfw=False,
        dataset_ids=(99999,),
    )  # fmt: skip
    try:
        await harness.bot.training.create(request)
    except UserFacingError as refused:
        assert refused.key == "train.unknown_datasets"
        assert refused.params["ids"] == "99999"
    else:
        raise AssertionError("a training on a dataset the account lacks was accepted")
    assert await harness.bot.store.trainings.recent(GUILD_A) == []


async def test_subject_and_base_model_must_be_offered_by_the_training_form(harness):
    bad_body = await train(harness, main_body="Spaceships", attachments=images(harness, 3))
    assert "`Spaceships` is not a subject the service offers: Style, Human" in bad_body
    bad_base = await train(harness, base_model="Nothing", attachments=images(harness, 3))
    assert "`Nothing` is not a base model the service offers" in bad_base
    assert await harness.bot.store.trainings.recent(GUILD_A) == []
    assert harness.emu.state.calls["upload_imgs"] == 0


async def test_a_model_without_trigger_word_says_none_rather_than_a_dash(harness):
    text = await train(harness, attachments=images(harness, 3))
    assert "#1" in text
    done = await announcement(harness, "is ready")
    assert "with trigger word none." in done["content"] and "`-`" not in done["content"]
    await wait_state(harness, 1, TrainingState.DONE)
    for locale, none in (("en-US", "trigger none"), ("zh-CN", "触发词 无")):
        ix = await harness.fake.slash(
            "models", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A, locale=locale
        )
        listed = await answer_text(ix)
        assert "Ink_Style" in listed and none in listed and "`-`" not in listed, listed
