"""The manual and the README hold together: the layout map names packages that exist, every
relative link (and its anchor) resolves, every page is in the navigation, every setting is in
the configuration reference, the README stays short, and its 30-second tour runs as written.

The examples of docs/check-a-license.md run in tests/processes/test_license_api.py, the command
table of docs/operations.md is checked against the CLI in tests/cli/test_surface.py, and the
variables the pages name against `.env.example` in tests/test_deploy.py.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

import pytest
from pydantic import BaseModel

from config.settings import Settings, env_name
from tests.support.docs import DOCS, README, examples, pages
from tests.support.procs import ROOT, Sandbox, clean_env

README_MAX_LINES = 250
LAYOUT = DOCS / "layout.md"
# A package path on the layout page: backticked, under one of our top-level packages.
_LAYOUT_PATH = re.compile(r"`((?:gateway|providers|sandbox|config|tests)/[^`\s<>…]*)`")
_FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.S | re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", flags=re.M)


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (code may hold bracket-and-paren text)."""
    return _FENCE.sub("", page.read_text(encoding="utf-8"))


def _slug(heading: str) -> str:
    """A heading's anchor as mkdocs makes it (Python-Markdown's toc slugify)."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    return {_slug(h) for h in _HEADING.findall(_prose(page))}


def test_every_package_the_layout_map_names_exists() -> None:
    named = set(_LAYOUT_PATH.findall(LAYOUT.read_text(encoding="utf-8")))

    assert len(named) > 20
    for top in ("gateway", "providers", "sandbox", "config", "tests"):
        assert f"{top}/" in named, f"the map does not name {top}/"
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


def test_the_layout_map_names_every_gateway_and_provider_package() -> None:
    # the reverse: a new package gets its row on the map
    packages = [
        f"{init.parent.relative_to(ROOT).as_posix()}/"
        for top in ("gateway", "providers", "sandbox")
        for init in (ROOT / top).glob("*/__init__.py")
        if init.parent.name != "migrations"
    ]
    named = set(_LAYOUT_PATH.findall(LAYOUT.read_text(encoding="utf-8")))

    assert len(packages) >= 14
    assert sorted(p for p in packages if p not in named) == []


def test_readme_fits_on_a_screen_or_two() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")

    assert lines <= README_MAX_LINES


# Every Markdown file a reader opens from the README, and the manual's pages.
LINKED = [
    README,
    ROOT / "CONTRIBUTING.md",
    ROOT / "CHANGELOG.md",
    ROOT / "bench" / "README.md",
    ROOT / "clients" / "python" / "README.md",
]


@pytest.mark.parametrize("page", [*LINKED, *pages()], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_to_an_existing_file_and_anchor(page: Path) -> None:
    broken = []
    for target in _LINK.findall(_prose(page)):
        if re.match(r"[a-z]+:", target) or target.startswith("<"):
            continue  # http(s), mailto: not ours to check
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing_anchor = bool(anchor) and file.suffix == ".md" and anchor not in _anchors(file)
        if not file.exists() or missing_anchor:
            broken.append(target)

    assert broken == []


def test_navigation_lists_every_page_once() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config.split("\nnav:\n", 1)[1]
    listed = re.findall(r"([\w/-]+\.md)\s*$", nav, flags=re.M)
    on_disk = [p.relative_to(DOCS).as_posix() for p in pages()]

    assert len(on_disk) >= 12
    assert sorted(listed) == sorted(on_disk)


def test_built_site_is_ignored_by_git() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    site_dir = re.search(r"(?m)^site_dir: *(\S+)", config)

    assert site_dir is not None
    assert f"{site_dir.group(1)}/" in (ROOT / ".gitignore").read_text().split()


def _env_names(model: type[BaseModel], *where: str) -> list[str]:
    names = []
    for field, info in model.model_fields.items():
        # SMTP's sender is `from` in the TOML and GATEWAY_SMTP__FROM in the environment
        key = "from" if (*where, field) == ("smtp", "sender") else field
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _env_names(annotation, *where, key)
        else:
            names.append(env_name(*where, key))
    return names


def test_configuration_reference_names_every_setting() -> None:
    reference = (DOCS / "configuration.md").read_text(encoding="utf-8")
    names = _env_names(Settings)

    assert len(names) > 60
    assert sorted(n for n in names if f"`{n}`" not in reference) == []


@pytest.mark.db
@pytest.mark.slow
def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    # given `make sandbox`'s command on free ports (the tour is written for :8000)
    tour = examples(README)["tour"]
    sandbox = Sandbox(tmp_path)
    with sandbox as box:
        # when the tour's lines run in a shell, as a reader pastes them
        here = tour.replace("localhost:8000", f"127.0.0.1:{sandbox.gateway}")
        run = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + here],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # then the purchase settled and the key it printed validates
    assert run.returncode == 0, run.stderr + box.log()
    assert re.search(r"(?m)^license key: [0-9A-Z]{4}(-[0-9A-Z]{4}){3}$", run.stdout), run.stdout
    assert '"code":"VALID"' in run.stdout.replace(" ", ""), run.stdout
    assert '"product":"pro"' in run.stdout.replace(" ", "")
