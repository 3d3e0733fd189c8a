"""Image names: the one rule from a Bento tag to its image, and the components' image.

The deployable unit is the Bento tag the package step produced: ``name:version``
becomes ``<registry>/<name>:<version>``, never ``:latest``. Every pipeline component
runs in ``crispops.config.COMPONENT_IMAGE``; for another registry it is
``<registry>/crispops-components:<version>``.
"""

from __future__ import annotations

import re

from crispops import __version__
from crispops.config import COMPONENT_IMAGE, COMPONENT_REPOSITORY
from crispops.errors import UserError

__all__ = ["COMPONENT_IMAGE", "bento_image", "component_image", "image_name"]

# OCI distribution spec: a repository path component and a tag.
_REPO_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def component_image(registry: str | None = None, *, spark: bool = False) -> str:
    """The components' image (its ``-spark`` variant with ``spark``): the pinned default,
    or the same name in ``registry``."""
    suffix = "-spark" if spark else ""
    if registry is None:
        return f"{COMPONENT_IMAGE}{suffix}"
    name = COMPONENT_REPOSITORY.rsplit("/", 1)[-1]
    return f"{registry.strip().rstrip('/')}/{name}:{__version__}{suffix}"


def bento_image(registry: str, bento_tag: str) -> str:
    """The image of a Bento: ``credit_default_v1:abc123`` → ``<registry>/credit_default_v1:abc123``.

    Raises ValueError for a tag that is not ``name:version``, names ``latest`` or is
    not a valid image reference.
    """
    name, sep, version = bento_tag.strip().partition(":")
    if not sep or not name or not version:
        raise UserError(
            f"Bento tag {bento_tag!r} must be name:version (e.g. credit_default_v1:abc123), "
            "the tag the package step printed"
        )
    if version.lower() == "latest":
        raise UserError(
            f"Bento tag {bento_tag!r} names 'latest': deploy pins the exact version the "
            "package step built, never :latest"
        )
    if not _REPO_COMPONENT_RE.match(name):
        raise UserError(
            f"Bento tag {bento_tag!r}: {name!r} is not a valid image name "
            "(lowercase letters, digits and . _ - separators)"
        )
    if not _TAG_RE.match(version):
        raise UserError(
            f"Bento tag {bento_tag!r}: {version!r} is not a valid image tag "
            "(letters, digits, _ . -; at most 128 characters)"
        )
    reg = registry.strip().rstrip("/")
    if not reg or any(c.isspace() for c in reg) or "@" in reg:
        raise UserError(f"registry {registry!r} is not a valid image registry/namespace")
    return f"{reg}/{name}:{version}"


def image_name(image: str) -> str:
    """The repository of an image reference, without tag or digest."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref
