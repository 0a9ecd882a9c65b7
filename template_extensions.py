"""Jinja extensions loaded by cookiecutter.json's ``_extensions``.

Cookiecutter renders every answer given with ``--no-input key=value`` as a
Jinja template before any hook runs, and renders every template file and
hook with the same kind of environment. A plain Jinja environment lets a
template reach Python internals, so an answer such as
``{{ "{0.__init__.__globals__[os].environ[X]}".format(cycler) }}`` would copy
an environment variable (a Modal token in CI) into the rendered files, and
``cycler.__init__.__globals__.os.system(...)`` would run commands.

``Sandbox`` turns cookiecutter's environment into Jinja's own sandbox.

Never rename or remove a class listed in ``_extensions``. ``cruft update``
renders the project's old template version and the new one in one Python
process, and Python imports this module only once: the new version's
render gets the old version's module. A listed name the old module lacks
stops the update (this is why this file is not ``local_extensions.py``
any more: the first versions listed ``local_extensions.DunderGuard``), and
a change to an existing class takes effect in an update only once the
project's recorded template version has it.
"""

from functools import cache

from jinja2 import Environment
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range


class UnsafeTemplateAccess(SecurityError, UndefinedError):
    """A template reached for something the sandbox does not allow.

    Still a ``SecurityError``; also an ``UndefinedError`` because Jinja's
    sandbox reports unsafe access as an undefined value, and cookiecutter
    turns an ``UndefinedError`` into a short message naming the answer
    instead of a traceback.
    """


class CookiecutterSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, refusing with ``UnsafeTemplateAccess``.

    The sandbox checks every attribute and item lookup (``.x``, ``[x]``,
    ``|attr``, ``|map(attribute=)``), every call, and the fields of
    ``str.format``/``format_map``; "immutable" also refuses methods that
    change a list, dict or set in place, such as ``cookiecutter.update``,
    which would let one answer rewrite another after it was checked.
    """

    def unsafe_undefined(self, obj, attribute):
        return self.undefined(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} "
            "object is not allowed in a template",
            name=attribute,
            obj=obj,
            exc=UnsafeTemplateAccess,
        )


@cache
def sandboxed_class(environment_class: type[Environment]) -> type[Environment]:
    """``environment_class`` with the sandbox's checks in front of it."""
    return type(
        f"Sandboxed{environment_class.__name__}",
        (CookiecutterSandbox, environment_class),
        {},
    )


class Sandbox(Extension):
    """Make the environment that loads this extension a sandboxed one.

    Cookiecutter always builds its own ``StrictEnvironment`` and offers no
    way to choose another class, but it loads extensions from that
    environment's constructor, before any template is compiled. So this
    extension moves the environment into a subclass of both classes: every
    method the sandbox overrides then applies (including the compiler's
    ``sandboxed`` flag, which routes every call through the sandbox), while
    cookiecutter's own behaviour (strict undefined values, its filters and
    extensions) stays as it was. Copying the sandbox's methods one by one
    instead would silently miss any it adds later.
    """

    def __init__(self, environment):
        super().__init__(environment)
        environment.__class__ = sandboxed_class(type(environment))
        # What SandboxedEnvironment.__init__ sets on an instance (Jinja
        # 3.1); tests/test_bad_input.py checks that nothing else is missing.
        environment.globals["range"] = safe_range
        environment.binop_table = environment.default_binop_table.copy()
        environment.unop_table = environment.default_unop_table.copy()
        # |tojson output is pasted into Python, TOML and JSON files. Keeping
        # non-ASCII text as it is (not as \u escapes) keeps it readable and
        # valid in all three; an emoji would otherwise become a pair of
        # surrogate escapes that Python reads as two broken characters.
        environment.policies["json.dumps_kwargs"] = {
            "sort_keys": True,
            "ensure_ascii": False,
        }


# Placeholder folder for an answer that is not a single folder name.
UNSAFE_FOLDER = "rejected-repo-name"


def project_folder(name: str) -> str:
    """The project's folder name: ``repo_name`` when it is one plain folder.

    Cookiecutter creates the folder before the pre-generation hook can
    refuse the name. An empty name would be the output folder itself
    (which exists, so cookiecutter fails with a misleading message), and
    "a/b" would create "a" that nothing removes. Such names get a
    placeholder folder instead, which cookiecutter deletes once the hook
    has said what is wrong with the real name.
    """
    if name in ("", ".", "..") or any(sep in name for sep in "/\\:"):
        return UNSAFE_FOLDER
    return name


class ProjectFolder(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["project_folder"] = project_folder
