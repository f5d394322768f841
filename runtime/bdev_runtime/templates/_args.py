"""Strict parsing of a template's own arguments (what follows ``--`` on ``lxc-create``).

Each template declares its options as :mod:`click` parameters; :class:`TemplateArgs` turns
them into a usage text for :attr:`bdev.templates.Template.usage` and parses
``TemplateContext.args`` without printing or exiting: any mistake (an unknown option, a
missing value, a stray positional argument, ``--help``) becomes one
:class:`~bdev.errors.InvalidInput` sentence that names the template and lists its options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from bdev.errors import InvalidInput
from .._i18n import _


class TemplateArgs:
    """The options one template accepts.

    :param template: the template's name, used in messages.
    :param params: its options, as :class:`click.Option` objects.
    """

    def __init__(self, template: str, params: Sequence[click.Parameter]):
        self.template = template
        self.command = click.Command(template, params=list(params), add_help_option=False)

    def usage(self) -> str:
        """The help for the options: one aligned line per option, as ``--help`` would show."""
        ctx = click.Context(self.command, info_name=self.template)
        rows = [rec for p in self.command.get_params(ctx) if (rec := p.get_help_record(ctx)) is not None]
        if not rows:
            return _("(no options)")
        formatter = click.HelpFormatter(width=100)
        formatter.write_dl(rows)
        return formatter.getvalue().rstrip("\n")

    def synopsis(self) -> str:
        """The options on one line, for error messages: ``--path PATH [--no-hostname]``."""
        ctx = click.Context(self.command, info_name=self.template)
        parts = []
        for param in self.command.get_params(ctx):
            if not isinstance(param, click.Option):
                continue
            text = param.opts[0] if param.is_flag else f"{param.opts[0]} {param.make_metavar(ctx)}"
            parts.append(text if param.required else f"[{text}]")
        return " ".join(parts) or _("no options")

    def parse(self, args: Sequence[str]) -> dict[str, Any]:
        """Parse ``args`` and return the option values by parameter name.

        :raises InvalidInput: the arguments do not fit the options.
        """
        try:
            ctx = self.command.make_context(self.template, list(args), resilient_parsing=False)
        except click.UsageError as exc:
            if isinstance(exc, click.NoSuchOption):
                # click's own text adds a second sentence ("Did you mean ...?"); the
                # synopsis below already lists what exists
                message = _("no such option {option!r}").format(option=exc.option_name)
            else:
                message = " ".join(exc.format_message().split()).rstrip(".")
                message = message[:1].lower() + message[1:]
            raise InvalidInput(
                _("template {template!r}: {message} (it takes: {synopsis})").format(
                    template=self.template, message=message, synopsis=self.synopsis())
            ) from None
        except click.ClickException as exc:  # pragma: no cover - click raises UsageError for bad args
            raise InvalidInput(_("template {template!r}: {cause}").format(
                template=self.template, cause=exc.format_message())) from None
        return dict(ctx.params)
