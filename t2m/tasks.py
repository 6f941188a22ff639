"""The two translation tasks and their prompts (Text+Chem T5's wording)."""

from __future__ import annotations

from dataclasses import dataclass

TEXT2MOL = "text2mol"
MOL2TEXT = "mol2text"
TASKS = (TEXT2MOL, MOL2TEXT)

# Text+Chem T5 (GT4SD multitask-text-and-chemistry-t5) prompts.
PROMPTS = {
    TEXT2MOL: "Write in SMILES the described molecule: ",
    MOL2TEXT: "Caption the following SMILES: ",
}
# Other wordings accepted on input (stripped before prompting again).
ALTERNATIVE_PROMPTS = {
    MOL2TEXT: ("Caption the following molecule: ",),
}
PROMPT_STYLES = ("textchem", "none")


@dataclass(frozen=True)
class Example:
    """One translation pair: ``source`` is what the model reads, ``target`` what it writes."""

    source: str
    target: str
    task: str


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    return task


def strip_prompt(text: str, task: str) -> str:
    for prompt in (PROMPTS[task], *ALTERNATIVE_PROMPTS.get(task, ())):
        if text.startswith(prompt):
            return text[len(prompt):]
    return text


def add_prompt(text: str, task: str, prompt_style: str = "textchem") -> str:
    """The model input for ``text`` under ``task``: the task prompt then the text.

    ``prompt_style="none"`` serves single-task checkpoints (MolT5) that read the bare input.
    """
    check_task(task)
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {prompt_style!r}: choose one of {', '.join(PROMPT_STYLES)}")
    text = strip_prompt(text, task)
    if prompt_style == "none":
        return text
    return PROMPTS[task] + text


def source_and_target(smiles: str, description: str, task: str) -> tuple[str, str]:
    """(source, target) of a (SMILES, description) pair for ``task``."""
    check_task(task)
    return (description, smiles) if task == TEXT2MOL else (smiles, description)
