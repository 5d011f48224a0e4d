"""Recipes are read strictly: every mistake names file:line:col and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from images.recipe import BaseImage, Debootstrap, RecipeError, load_recipe, parse_recipe

RECIPES = Path(__file__).parents[2] / "images" / "recipes"
GOOD = """\
name: debian-12
os: linux
base:
  debootstrap:
    suite: bookworm
packages: [linux-image-amd64, python3]
files:
  - {path: /etc/motd, content: "hi\\n", mode: "0600"}
runner: {python: "3.11"}
disk_size: 2G
"""
SHA = "ab" * 32


def parse(text: str, tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return load_recipe(path)


def error(text: str, tmp_path: Path) -> str:
    with pytest.raises(RecipeError) as info:
        parse(text, tmp_path)
    return str(info.value)


def test_a_good_recipe_reads_into_typed_fields(tmp_path: Path):
    r = parse(GOOD, tmp_path)
    assert (r.name, r.os, r.disk_size, r.bootrom, r.bhyve_bootrom) == ("debian-12", "linux", 2 << 30, "uefi",
                                                                        "BHYVE_RELEASE")
    assert r.base == Debootstrap("bookworm", "minbase", "host")
    assert r.packages == ("linux-image-amd64", "python3")
    assert r.files[0].path == "/etc/motd" and r.files[0].mode == 0o600 and r.files[0].content == "hi\n"
    assert r.runner.python == "3.11" and r.runner.prefix == "/opt/solstice/runner"


def test_the_shipped_recipes_are_valid():
    recipes = {p.name: load_recipe(p) for p in sorted(RECIPES.glob("*.yaml"))}
    oses = {r.os for r in recipes.values()}
    assert oses == {"linux", "illumos"}, "at least a Debian and an OmniOS guest"
    for recipe in recipes.values():
        if isinstance(recipe.base, BaseImage):  # pinned, or the publisher's checksum file
            assert len(recipe.base.sha256) == 64 or recipe.base.sha256_url.startswith("https://")


def test_unknown_key_names_its_line_and_column(tmp_path: Path):
    message = error(GOOD.replace("packages:", "pakages:"), tmp_path)
    assert message.startswith(f"{tmp_path / 'r.yaml'}:6:1: unknown key 'pakages' in recipe")
    assert "packages" in message  # the known keys are listed


def test_unknown_key_in_a_nested_section(tmp_path: Path):
    message = error(GOOD.replace("    suite: bookworm", "    suite: bookworm\n    mirorr: x"), tmp_path)
    assert ":6:5: unknown key 'mirorr' in base.debootstrap" in message


def test_missing_fields_are_named(tmp_path: Path):
    message = error(GOOD.replace("disk_size: 2G\n", "").replace("os: linux\n", ""), tmp_path)
    assert ":1:1: recipe lacks 'disk_size', 'os'" in message


@pytest.mark.parametrize("sha, why", [
    ("abc", "is not 64 hex digits"),
    ("zz" * 32, "is not 64 hex digits"),
    ("ab" * 33, "is not 64 hex digits"),
])
def test_a_bad_checksum_is_refused_where_it_is_written(tmp_path: Path, sha: str, why: str):
    text = GOOD.replace("  debootstrap:\n    suite: bookworm\n",
                        f"  image:\n    url: https://example.invalid/omnios.raw.zst\n    sha256: {sha}\n")
    message = error(text, tmp_path)
    assert ":6:13: base.image.sha256" in message and why in message


def test_an_image_base_needs_url_or_path_not_both(tmp_path: Path):
    both = GOOD.replace("  debootstrap:\n    suite: bookworm\n",
                        f"  image:\n    url: https://x.invalid/a.raw\n    path: a.raw\n    sha256: {SHA}\n")
    assert "needs exactly one of 'url' or 'path'" in error(both, tmp_path)
    ftp = GOOD.replace("  debootstrap:\n    suite: bookworm\n",
                       f"  image:\n    url: ftp://x/a.raw\n    sha256: {SHA}\n")
    assert "is not an http(s):// or file:// URL" in error(ftp, tmp_path)


def test_an_image_base_needs_one_checksum(tmp_path: Path):
    neither = GOOD.replace("  debootstrap:\n    suite: bookworm\n", "  image:\n    url: https://x.invalid/a.raw\n")
    assert "needs exactly one of 'sha256' or 'sha256_url'" in error(neither, tmp_path)
    plain = GOOD.replace("  debootstrap:\n    suite: bookworm\n",
                         "  image:\n    url: https://x.invalid/a.raw\n    sha256_url: http://x.invalid/a.sha256\n")
    assert "must be an https:// URL" in error(plain, tmp_path)


def test_compression_follows_the_file_name(tmp_path: Path):
    text = GOOD.replace("  debootstrap:\n    suite: bookworm\n",
                        f"  image:\n    url: https://x.invalid/omnios.cloud.raw.zst\n    sha256: {SHA.upper()}\n")
    base = parse(text, tmp_path).base
    assert isinstance(base, BaseImage) and (base.compression, base.format, base.sha256) == ("zstd", "raw", SHA)


@pytest.mark.parametrize("old, new, expected", [
    ("disk_size: 2G", "disk_size: 2 GB", "disk_size: '2 GB' is not a size like 2G or 512M"),
    ("os: linux", "os: windows", "os 'windows' is not one of: linux, illumos"),
    ("name: debian-12", "name: Debian 12", "name 'Debian 12' is not lowercase letters"),
    ('mode: "0600"', 'mode: "rw"', "files[].mode 'rw' is not an octal mode"),
    ("{path: /etc/motd,", "{path: etc/motd,", "must be an absolute path without '..'"),
    ("{path: /etc/motd,", "{path: /etc/../motd,", "must be an absolute path without '..'"),
    ('content: "hi\\n",', 'source: missing.txt,', "source 'missing.txt' does not exist next to the recipe"),
    ("packages: [linux-image-amd64, python3]", "packages: [linux-image-amd64, 'rm -rf /']",
     "packages[] 'rm -rf /' is not a package name"),
    ('runner: {python: "3.11"}', 'runner: {python: "3.11", prefix: opt/runner}', "must be an absolute path"),
    ('runner: {python: "3.11"}', 'runner: {python: "2.7"}', "runner.python '2.7' is not a Python version"),
    ("packages: [linux-image-amd64, python3]\n", "", "a debootstrap base needs 'packages'"),
])
def test_bad_values_say_what_is_wrong(tmp_path: Path, old: str, new: str, expected: str):
    assert old in GOOD
    assert expected in error(GOOD.replace(old, new), tmp_path)


def test_duplicate_keys_and_bad_yaml(tmp_path: Path):
    assert ":2:1: duplicate key 'name' in recipe" in error(GOOD.replace("os: linux", "name: again"), tmp_path)
    assert ":2:3: not valid YAML" in error("name: a\n  - b: [\n", tmp_path) or "not valid YAML" in \
        error("name: a\n  - b: [\n", tmp_path)
    assert "the recipe is empty" in error("", tmp_path)


def test_the_digest_changes_with_the_recipe_and_its_files(tmp_path: Path):
    (tmp_path / "motd").write_text("one")
    text = GOOD.replace('content: "hi\\n",', "source: motd,")
    first = parse(text, tmp_path).digest
    (tmp_path / "motd").write_text("two")
    assert parse(text, tmp_path).digest != first
    assert parse_recipe(text + "# comment\n", tmp_path / "r.yaml").digest != parse(text, tmp_path).digest
