"""The error an integration raises when imported without its optional dependency."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(module: str, package: str, extra: str) -> ImportError:
    """Return the ImportError naming the extra to install for ``module``.

    Args:
        module: The integration module (``flext_ctx_aspects.integrations.httpx``).
        package: The missing distribution (``httpx``).
        extra: The extra of ``flext-ctx-aspects`` that installs it.
    """
    return ImportError(
        f"{module} needs {package}, which is not installed: install the {extra!r} extra, "
        f"pip install 'flext-ctx-aspects[{extra}]' (from a clone of the repository: "
        f"pip install -e '.[{extra}]'), or pip install {package}",
        name=package,
    )
