"""The distribution: the sdist holds the package and its license but no tests, and it
builds and installs into a clean directory with the package's data files."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from email.parser import Parser
from pathlib import Path

import streaming

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = ROOT) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, timeout=300)


def test_the_sdist_builds_and_installs(tmp_path: Path) -> None:
    run(sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path))
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "streaming/py.typed"} <= names
    assert not any(name.startswith(("tests/", "benchmarks/", "project/")) for name in names)

    target = tmp_path / "site"
    run(
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
        "--no-build-isolation", "--target", str(target), str(sdist),
    )  # fmt: skip
    package = target / "streaming"
    assert (package / "py.typed").is_file()
    assert (package / "templates" / "streaming" / "chat.html").is_file()
    assert (package / "static" / "streaming" / "streaming.js").is_file()
    for name in ("django.po", "django.mo"):  # the French page, and its source
        assert (package / "locale" / "fr" / "LC_MESSAGES" / name).is_file()
    assert (package / "management" / "commands" / "clearconversations.py").is_file()
    (info,) = target.glob("django_llm_streaming-*.dist-info")
    metadata = Parser().parsestr((info / "METADATA").read_text())
    assert metadata["Version"] == streaming.__version__
    assert metadata["License-Expression"] == "MIT"
    assert "Framework :: Django :: 6.0" in metadata.get_all("Classifier")
    assert any(info.glob("licenses/LICENSE"))
