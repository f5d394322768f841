"""``bdev plugin new NAME``: write a working plugin skeleton.

:func:`write_skeleton` makes ``<directory>/bdev-<name>/`` with ``pyproject.toml`` (the
``bdev.plugins`` entry point), ``bdev_<name>/__init__.py`` (the hook), ``bdev_<name>/backend.py``
(a :class:`~bdev.backend.Backend` subclass whose operations all raise "not supported"),
``tests/test_<name>.py`` (the conformance kit) and ``README.md``.  Installed as it is, the
backend is listed by ``bdev backends`` as usable with no capabilities.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..errors import AlreadyExists, InvalidInput
from ..i18n import _
from . import templates

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")


def validate_name(name: str, taken: Iterable[str] = ()) -> None:
    """Refuse a plugin name that is not ``[a-z][a-z0-9_]*`` or names an installed backend.

    :param taken: backend names and aliases already registered.
    :raises InvalidInput: with one sentence saying why.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            _(
                "plugin name {name!r} is not valid: use a lower-case letter followed by lower-case letters, digits or "
                "underscores"
            ).format(name=name)
        )
    if name in set(taken):
        raise InvalidInput(_(
            "plugin name {name!r} is already the name of an installed backend (see bdev backends)"
        ).format(name=name))


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def skeleton_files(name: str) -> dict[str, str]:
    """The skeleton's files (relative path -> content) for backend ``name``."""
    values = {
        "name": name,
        "package": f"bdev_{name}",
        "distribution": f"bdev-{name}",
        "cls": f"{_camel(name)}Backend",
        "test_cls": f"Test{_camel(name)}",
    }
    package = values["package"]
    return {
        "pyproject.toml": templates.PYPROJECT.format(**values),
        f"{package}/__init__.py": templates.INIT.format(**values),
        f"{package}/backend.py": templates.BACKEND.format(**values),
        f"tests/test_{name}.py": templates.TEST.format(**values),
        "README.md": templates.README.format(**values),
    }


def write_skeleton(name: str, directory: Path, taken: Iterable[str] = ()) -> Path:
    """Write the skeleton for ``name`` to ``directory/bdev-<name>`` and return that folder.

    :raises InvalidInput: a bad or taken name.
    :raises AlreadyExists: the target folder exists; nothing is written.
    """
    validate_name(name, taken)
    target = Path(directory) / f"bdev-{name}"
    if target.exists() or target.is_symlink():
        raise AlreadyExists(_(
            "the folder {target} already exists; choose another --directory or remove it"
        ).format(target=target))
    files = skeleton_files(name)
    target.mkdir(parents=True)
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target
