"""Every dotted name ``samlit.<...>`` the README, docs/*.md and conf/**/*.yaml write (a ``_target_``, a module to
``python -m``, a class a comment points to) names something that exists: the longest importable module prefix is
imported and the rest looked up with getattr. ``samlit/model/sam.py``-style paths are not dotted names;
``${samlit.run_name:}`` is a config resolver, checked as one (registered by ``samlit.launch.resolvers``), and so
is a bare ``samlit.run_name`` that names a registered resolver."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO

# samlit.<identifier>[.<identifier> ...], not inside a longer word or path; "${" before it: a resolver
DOTTED = re.compile(r"(?<![\w/.-])(\$\{)?(samlit(?:\.[A-Za-z_]\w*)+)")


def sources() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "conf").rglob("*.yaml"))]


def mentions() -> list[Any]:
    """One pytest param per (file, line, name), ids ``<file>:<line>:<name>``."""
    found = []
    for path in sources():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for match in DOTTED.finditer(line):
                where = f"{path.relative_to(REPO)}:{number}"
                found.append(pytest.param(match.group(2), bool(match.group(1)), id=f"{where}:{match.group(2)}"))
    return found


def resolve(name: str) -> Any:
    """The object ``name`` names: its longest importable module prefix, then attributes. A module that exists but
    fails to import raises its own error (that is a broken module, not a wrong name)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name):
                continue  # this prefix is no module: try a shorter one
            raise
        owner = module_name
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                raise LookupError(f"{owner} has no attribute {attribute!r}")
            found, owner = getattr(found, attribute), f"{owner}.{attribute}"
        return found
    raise LookupError(f"no module {parts[0]}")


def is_resolver(name: str) -> bool:
    importlib.import_module("samlit.launch.resolvers")  # registers the configs' ${samlit.*:} resolvers
    return OmegaConf.has_resolver(name)


def test_the_scan_finds_names_and_tells_paths_and_resolvers_apart():
    text = "see `samlit.data.prompts.PromptSampler`. samlit/model/sam.py ${samlit.run_name:} python -m samlit.cache"
    assert [(m.group(2), bool(m.group(1))) for m in DOTTED.finditer(text)] == [
        ("samlit.data.prompts.PromptSampler", False),
        ("samlit.run_name", True),
        ("samlit.cache", False),
    ]
    assert resolve("samlit.core.errors.SamlitError").__name__ == "SamlitError"
    with pytest.raises(LookupError, match=r"samlit\.core\.errors has no attribute 'Nothing'"):
        resolve("samlit.core.errors.Nothing")


@pytest.mark.parametrize("name,as_resolver", mentions())
def test_dotted_name_resolves(name, as_resolver):
    if as_resolver:
        assert is_resolver(name), f"${{{name}:}} is not a registered resolver (samlit.launch.resolvers)"
        return
    try:
        resolve(name)
    except LookupError as error:
        if not is_resolver(name):
            pytest.fail(f"{name} does not resolve: {error}")
