"""`make bench` on a machine without wrk says exactly how to get it."""

from __future__ import annotations

import shutil
import subprocess

from devtools.gunicorn import PROJECT_ROOT


def test_make_bench_without_wrk_says_how_to_install_it(tmp_path):
    # A PATH with make and a shell but no wrk (the venv is already built by `make test`).
    for tool in ("make", "sh", "touch"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    result = subprocess.run(
        ["make", "--no-print-directory", "bench"],
        cwd=PROJECT_ROOT,
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "make bench needs wrk" in result.stderr
    assert "apt-get install -y wrk" in result.stderr
    assert "brew install wrk" in result.stderr
    assert "scripts.bench" not in result.stdout  # it stopped before starting anything
