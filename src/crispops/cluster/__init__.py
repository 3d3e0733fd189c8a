"""The cluster side: image names, container builds, and deploy (render, apply, roll out).

Nothing here is imported by the steps or the components.
"""
