"""The one pinned place for container images.

Every pipeline component names ``COMPONENT_IMAGE`` as its ``base_image``; the
image is built from the project's Dockerfile with the same tag.
"""

from crispops import __version__

COMPONENT_REPOSITORY = "ghcr.io/crispops/crispops-components"
COMPONENT_IMAGE = f"{COMPONENT_REPOSITORY}:{__version__}"
