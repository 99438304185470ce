"""The container recipe: contrib/container/cont-init.d/50-hermes-patch on a tree shaped like the official image.

No container runtime: the image's layout is rebuilt under a temporary
folder (``opt/hermes`` holding the real 0.19.0 release's ``hermes_cli``
source tree and its ``.venv``, whose interpreter finds that tree the way the
image's does; ``etc/hermes-patch/config.toml``; ``var/lib``), and the script
runs with ``sh`` (dash on Debian, as in the image) exactly as the documented
Dockerfile line runs it, its variables pointing into that tree.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, hermes_patch_exe, real_release, sha

pytestmark = pytest.mark.real

SCRIPT = REPO / "contrib/container/cont-init.d/50-hermes-patch"
WEB = "hermes_cli/web_server.py"
CONFIG = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'


class Image:
    """A tree shaped like the official image, under ``top``."""

    def __init__(self, top: Path, config: str | None = CONFIG) -> None:
        self.top = top
        hermes = top / "opt/hermes"
        shutil.copytree(
            real_release("0.19.0") / "hermes_cli", hermes / "hermes_cli", ignore=shutil.ignore_patterns("__pycache__")
        )
        venv = hermes / ".venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        # the image's venv finds the source tree /opt/hermes (the project is bound to it, not copied in)
        [site] = (venv / "lib").glob("python3*/site-packages")
        (site / "hermes-source.pth").write_text(f"{hermes}\n")
        bindir = top / "opt/hermes-patch/bin"
        bindir.mkdir(parents=True)
        (bindir / "hermes-patch").symlink_to(hermes_patch_exe())
        if config is not None:
            (top / "etc/hermes-patch").mkdir(parents=True)
            (top / "etc/hermes-patch/config.toml").write_text(config)
        self.web = hermes / WEB
        self.state = top / "var/lib/hermes-patch"

    def start(self, strict: bool = False, **overrides: str) -> subprocess.CompletedProcess:
        """Run the script as the Dockerfile's RUN line (strict) or s6-overlay at start does."""
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.top / "root"),
            "HERMES_PATCH_BIN": str(self.top / "opt/hermes-patch/bin/hermes-patch"),
            "HERMES_PATCH_PYTHON": str(self.top / "opt/hermes/.venv/bin/python"),
            "HERMES_PATCH_CONFIG": str(self.top / "etc/hermes-patch/config.toml"),
            "HERMES_PATCH_STATE_DIR": str(self.state),
            **({"HERMES_PATCH_STRICT": "1"} if strict else {}),
            **overrides,
        }
        return subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)


def test_the_dockerfile_in_the_docs_runs_this_script():
    docs = (REPO / "docs/many-hosts.md").read_text()
    dockerfile = re.search(r"```dockerfile\n(.*?)```", docs, re.S).group(1)
    copy = re.search(r"^COPY --chmod=0755 (\S+) (/etc/cont-init.d/\S+)$", dockerfile, re.M)
    assert copy and (REPO / copy.group(1)) == SCRIPT and SCRIPT.stat().st_mode & 0o111
    assert f"RUN HERMES_PATCH_STRICT=1 sh {copy.group(2)}" in dockerfile.splitlines()
    assert SCRIPT.read_text().startswith(
        "#!/command/with-contenv sh\n"
    )  # s6-overlay's environment, like the image's own scripts


def test_build_then_every_start(tmp_path: Path):
    image = Image(tmp_path / "image")
    pristine = sha(image.web)
    built = image.start(strict=True)
    assert built.returncode == 0 and built.stderr == "", built.stderr
    applied, *after = built.stdout.splitlines()
    assert (
        applied
        == f"[hermes-patch] applied durable-action-result, public-action-status, relax-ws-peer-check → {image.web}"
    )
    assert all(line.startswith("[hermes-patch] restart: ") for line in after), (
        built.stdout
    )  # apply's restart advice, passed on
    patched = sha(image.web)
    assert patched != pristine and "# hermes-patch: relax-ws-peer-check" in image.web.read_text()
    assert (
        image.state.stat().st_mode & 0o777 == 0o700 and not (tmp_path / "image/root").exists()
    )  # nothing in root's home

    started = image.start()  # the container starts from the built image: nothing to do
    assert (started.returncode, started.stdout, started.stderr) == (0, "[hermes-patch] nothing to apply\n", "")
    assert sha(image.web) == patched

    status = subprocess.run(
        [
            hermes_patch_exe(),
            "status",
            "--json",
            "--python",
            str(image.top / "opt/hermes/.venv/bin/python"),
            "--config",
            str(image.top / "etc/hermes-patch/config.toml"),
            "--state-dir",
            str(image.state),
        ],
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stdout


def test_a_refusal_at_start_is_logged_and_the_container_starts_unpatched(tmp_path: Path):
    image = Image(tmp_path / "image")
    image.web.write_text(image.web.read_text().replace("def _ws_client_is_allowed(", "def _renamed_upstream("))
    odd = sha(image.web)
    started = image.start()
    assert started.returncode == 0 and started.stdout == ""
    first, second = started.stderr.splitlines()
    assert first.startswith(f"[hermes-patch] relax-ws-peer-check does not recognize the code in {image.web}")
    assert second == "[hermes-patch] the dashboard starts unpatched; HERMES_PATCH_STRICT=1 makes this an error"
    built = image.start(strict=True)  # at build time it fails the build instead
    assert built.returncode == 2 and built.stderr.splitlines() == [first]
    assert sha(image.web) == odd


def test_missing_tool_and_missing_or_bad_configuration(tmp_path: Path):
    image = Image(tmp_path / "image", config=None)
    pristine = sha(image.web)
    absent = image.start(strict=True, HERMES_PATCH_BIN=str(tmp_path / "nowhere/hermes-patch"))
    assert absent.returncode == 2 and "hermes-patch is not installed where HERMES_PATCH_BIN points" in absent.stderr
    assert image.start(HERMES_PATCH_BIN=str(tmp_path / "nowhere/hermes-patch")).returncode == 0
    assert sha(image.web) == pristine

    defaults = image.start()  # no configuration file: the defaults (on 0.19.0: the two Update-button patches)
    assert defaults.returncode == 0 and [line for line in defaults.stdout.splitlines() if " restart: " not in line] == [
        f"[hermes-patch] no configuration at {image.top / 'etc/hermes-patch/config.toml'}: built-in defaults (no trusted proxies, hosts or origins)",
        f"[hermes-patch] applied durable-action-result, public-action-status → {image.web}",
    ]

    (image.top / "etc/hermes-patch").mkdir(parents=True)
    (image.top / "etc/hermes-patch/config.toml").write_text(
        '[patches.relax-ws-peer-check]\ntrusted_proxies = ["10.0.0.5/24"]\n'
    )
    before = sha(image.web)
    bad = image.start(strict=True)
    assert (
        bad.returncode == 2
        and "10.0.0.5/24" in bad.stderr
        and str(image.top / "etc/hermes-patch/config.toml") in bad.stderr
    )
    assert sha(image.web) == before


def test_root_instead_of_the_interpreter(tmp_path: Path):
    image = Image(tmp_path / "image")
    shutil.rmtree(image.top / "opt/hermes/.venv")
    started = image.start(HERMES_PATCH_ROOT=str(image.top / "opt/hermes"))
    assert started.returncode == 0 and started.stdout.startswith("[hermes-patch] applied "), started.stderr
