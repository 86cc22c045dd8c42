"""The one line between an error the user can fix and a bug.

:class:`UserError` marks the first kind: a bad file, option or configuration, a damaged index or
knowledge base, a model that cannot be fetched. The command line prints its message on one line
and exits 2. Any other exception is a bug: the command line prints its traceback and exits 1.

Error classes of the project mix it in next to the builtin they have always been
(``class IndexFormatError(UserError, ValueError)``), so callers that catch ``ValueError`` or
``RuntimeError`` keep working; a bad value the user gave is a :class:`UserInputError`. A plain
exception raised about the user's input (a path that is a folder) becomes one with
``raise UserError(str(exc)) from exc``; reports then name the type of the original
(:func:`cause_type`). A class that cannot inherit from it (``eval.metrics`` stays free of our
packages) is registered instead, ``UserError.register(MetricsInputError)``: ``isinstance`` sees
it (an ``except UserError`` clause does not), so the command line tests with ``isinstance``.

The lowest layer: ``retriever``, ``rag_vqa``, ``generator`` and ``eval`` use it.
"""

from __future__ import annotations

from abc import ABCMeta

__all__ = ["UserError", "UserInputError", "UserTypeError", "cause_type"]


class UserError(Exception, metaclass=ABCMeta):
    """An error the user can fix; its message says what and how, in one line."""


class UserInputError(UserError, ValueError):
    """A value the user gave (an option, a field of their file) that cannot be used; a
    ``ValueError`` too, for the callers that check values with ``except ValueError``."""


class UserTypeError(UserError, TypeError):
    """An argument of the wrong kind the user gave (an unknown or misspelled setting, document
    ids of mixed types); a ``TypeError`` too, as Python reports unknown keywords."""


def cause_type(exc: BaseException) -> str:
    """The name of the type an error report shows: that of the original exception when ``exc``
    is a bare :class:`UserError` converted from it, else ``exc``'s own."""
    if type(exc) is UserError and exc.__cause__ is not None:
        return type(exc.__cause__).__name__
    return type(exc).__name__
