"""Domain errors of the prompting core: each message names the problem and where it is.

The CLI and the pages turn these into user-facing messages; nothing here prints.
"""

from __future__ import annotations


class PromptingError(Exception):
    """Base of every error the prompting core raises on bad input."""


class TemplateNotFound(PromptingError):
    def __init__(self, name: str, available: list[str]):
        self.name, self.available = name, available
        listed = ", ".join(available) if available else "(none)"
        super().__init__(f"template '{name}' not found; available: {listed}")


class MissingVariables(PromptingError):
    def __init__(self, template: str, names: list[str]):
        self.template, self.names = template, sorted(names)
        super().__init__(f"template '{template}' is missing variables: {', '.join(self.names)}")


class TemplateSyntax(PromptingError):
    def __init__(self, file: str, line: int | None, detail: str):
        self.file, self.line, self.detail = file, line, detail
        where = f"{file}, line {line}" if line else file
        super().__init__(f"syntax error in {where}: {detail}")


class UnsafeTemplate(PromptingError):
    def __init__(self, template: str, detail: str):
        self.template, self.detail = template, detail
        super().__init__(f"template '{template}' was refused by the sandbox: {detail}")


class FrontMatterError(PromptingError):
    def __init__(self, file: str, detail: str):
        self.file, self.detail = file, detail
        super().__init__(f"bad front matter in {file}: {detail}")


class RenderError(PromptingError):
    """Any other failure while rendering (a wrong type of variable, a bad stage name...)."""


class UnknownDelimiter(PromptingError):
    def __init__(self, style: str, choices: list[str]):
        super().__init__(f"unknown delimiter style '{style}'; choose one of: {', '.join(choices)}")
