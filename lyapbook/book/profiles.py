"""Named profiles: one file (``chapters/profiles.yml``) says how each chapter runs at each scale.

``teaching`` is each chapter's own parameters cell; ``ci`` (seconds per chapter, for the test
suite) and ``paper`` (the dissertation's sizes) override some of those values.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .chapters import Chapter

__all__ = ["PROFILES", "DEFAULT_PROFILE", "load_profiles", "resolve_parameters", "BookError"]

PROFILES = ("ci", "teaching", "paper")
DEFAULT_PROFILE = "teaching"
PROFILES_FILE = Path("chapters") / "profiles.yml"


class BookError(ValueError):
    """A bad request to the book runner (unknown profile, chapter or parameter)."""


def load_profiles(root: Path) -> dict[str, dict[str, dict[str, object]]]:
    """{profile: {chapter stem: {parameter: value}}} from ``chapters/profiles.yml``."""
    data = yaml.safe_load((root / PROFILES_FILE).read_text()) or {}
    unknown = set(data) - set(PROFILES)
    if unknown:
        raise BookError(f"{PROFILES_FILE}: unknown profile(s) {sorted(unknown)}; profiles are {', '.join(PROFILES)}")
    return {name: (data.get(name) or {}) for name in PROFILES}


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise BookError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return profile


def resolve_parameters(
    chapter: Chapter,
    profile: str,
    profiles: dict[str, dict[str, dict[str, object]]],
    overrides: dict[str, object] | None = None,
) -> dict[str, object]:
    """The full parameter set of ``chapter`` under ``profile`` plus explicit ``overrides``.

    Raises :class:`BookError` naming any parameter that the chapter's parameters cell lacks.
    """
    check_profile(profile)
    defaults = chapter.defaults()
    parameters = dict(defaults)
    for source, values in ((f"profile {profile!r}", profiles[profile].get(chapter.stem, {})), ("-p", overrides or {})):
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise BookError(
                f"{source}: chapter {chapter.stem} has no parameter(s) {', '.join(unknown)}; "
                f"its parameters are {', '.join(sorted(defaults))}"
            )
        parameters.update(values)
    return parameters
