"""Server styles: checking a style's definition and applying it to a member's prompt.

A style's prompt is a template with exactly one `{prompt}`, replaced by the member's
prompt literally: member and admin text may hold other braces, so no `str.format`.
Nothing here knows about Discord.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.errors import UserFacingError
from bot.jobs.admission import find_blocked_word
from bot.store import Style, StyleRepo, Task
from bot.text import NEGATIVE_PROMPT_MAX, clean_prompt, clean_text

PLACEHOLDER = "{prompt}"
NAME_MAX = 32  # short enough to read in an autocomplete list and a result's embed
STYLES_MAX = 25  # Discord shows at most 25 autocomplete choices


def check_name(name: str) -> str:
    """The cleaned style name, refused when empty or longer than NAME_MAX once cleaned."""
    cleaned = clean_text(name)
    if not cleaned:
        raise UserFacingError("styles.empty_name")
    if len(cleaned) > NAME_MAX:
        raise UserFacingError("styles.name_too_long", length=len(cleaned), limit=NAME_MAX)
    return cleaned


def check_template(template: str, max_length: int) -> str:
    """The cleaned template, refused unless it holds `{prompt}` exactly once within max_length.

    Counted after cleaning, as NFKC turns full-width braces into `{prompt}` too.
    """
    cleaned = clean_prompt(template, max_length=max_length, field="style_prompt")
    found = cleaned.count(PLACEHOLDER)
    if found != 1:
        raise UserFacingError("styles.placeholder", count=found)
    return cleaned


def check_negative(negative_prompt: str | None) -> str:
    """The cleaned negative prompt of a style ("" when none)."""
    return clean_prompt(
        negative_prompt, required=False, max_length=NEGATIVE_PROMPT_MAX, field="negative_prompt"
    )


def check_blocked_words(template: str, negative_prompt: str, words: Iterable[str]) -> None:
    """Refuse a style whose own text holds a blocked word: every use of it would be refused."""
    word = find_blocked_word(f"{template}\n{negative_prompt}", words)
    if word is not None:
        raise UserFacingError("styles.blocked_word", word=word)


def apply_template(template: str, member_prompt: str) -> str:
    """The template with its `{prompt}` replaced by the member's prompt, taken literally."""
    before, _, after = template.partition(PLACEHOLDER)
    return f"{before}{member_prompt}{after}"


def merge_negative(style_negative: str, member_negative: str) -> str:
    """Both negative prompts, comma separated, or whichever one is given."""
    return ", ".join(part for part in (style_negative, member_negative) if part)


def choose_negative(style: Style | None, explicit: str | None, fallback: str) -> str:
    """The negative prompt of a request: the member's merged with the style's.

    Without one from the member, the style's own negative prompt replaces the fallback
    (the server's default) when it has one: the style is the more specific choice.
    """
    if style is None:
        return fallback if explicit is None else explicit
    if explicit is not None:
        merged = merge_negative(style.negative_prompt, clean_text(explicit))
        if len(merged) > NEGATIVE_PROMPT_MAX:
            raise UserFacingError(
                "styles.negative_too_long",
                style=style.name,
                length=len(merged),
                limit=NEGATIVE_PROMPT_MAX,
            )
        return merged
    return style.negative_prompt or fallback


async def find_style(styles: StyleRepo, guild_id: int, name: str | None) -> Style | None:
    """The guild's style that a member named (any case); None when they named none."""
    if name is None or not name.strip():
        return None
    style = await styles.get(guild_id, clean_text(name))
    if style is None:
        raise UserFacingError("styles.unknown", name=name)
    return style


def restyle(
    task: Task, new_member_prompt: str, current: Style | None = None
) -> tuple[str, str | None]:
    """The prompt to send when `task` is remixed with new words, and those words (cleaned).

    The rule, in order:
    - a task made without a style sends the new words as they are (member prompt None);
    - `current` is the guild's style of the task's style name as it is now (the caller looks
      it up, see `restyle_task`): its template is applied, so a remix follows the style as
      the server defines it today;
    - the style was removed or renamed since (`current` None): the task's own wrapping is
      kept, replacing the first occurrence of its member prompt in the prompt it sent. If
      that prompt does not contain them, the new words are sent alone rather than guessed.

    The result is checked against the prompt length limit at admission, like any request.
    """
    words = clean_prompt(new_member_prompt)
    if task.style is None:
        return words, None
    if current is not None:
        return apply_template(current.prompt, words), words
    old = task.member_prompt
    if old and old in task.prompt:
        return task.prompt.replace(old, words, 1), words
    return words, words


async def restyle_task(
    styles: StyleRepo, task: Task, new_member_prompt: str
) -> tuple[str, str | None]:
    """`restyle` with the task's style looked up in its guild as it is now."""
    current = await styles.get(task.guild_id, task.style) if task.style else None
    return restyle(task, new_member_prompt, current)
