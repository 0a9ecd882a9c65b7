"""Jinja extensions loaded by cookiecutter.json's ``_extensions``.

Cookiecutter renders every answer given with ``--no-input key=value`` as a
Jinja template before any hook runs, so an answer such as
``{{ cycler.__init__.__globals__.os.system(...) }}`` would run code on the
machine of whoever renders the template. Jinja's sandbox blocks that by
refusing dunder and interpreter-internal attributes; this extension applies
the same rule to cookiecutter's environment. Ordinary templates never need
such attributes, so nothing legitimate is lost.
"""

from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.sandbox import is_internal_attribute


def _refuse_unsafe(obj, name) -> None:
    if isinstance(name, str) and (name.startswith("__") or is_internal_attribute(obj, name)):
        raise SecurityError(f"access to attribute {name!r} is not allowed")


class DunderGuard(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        plain_getattr = environment.getattr
        plain_getitem = environment.getitem

        def guarded_getattr(obj, attribute):
            _refuse_unsafe(obj, attribute)
            return plain_getattr(obj, attribute)

        def guarded_getitem(obj, argument):
            _refuse_unsafe(obj, argument)
            return plain_getitem(obj, argument)

        environment.getattr = guarded_getattr
        environment.getitem = guarded_getitem
        # |attr("name") reads attributes without going through getattr above.
        environment.filters["attr"] = guarded_getattr
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
