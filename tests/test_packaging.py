"""kernels/ and cli/ install inside the numbamlp namespace, never as top-level modules."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_numbamlp_kernels_and_cli_import():
    import numbamlp.cli.main
    import numbamlp.kernels

    assert Path(numbamlp.kernels.__file__).parent == ROOT / "kernels"
    assert callable(numbamlp.cli.main.main)


@pytest.mark.parametrize("module", ["kernels", "cli"])
def test_top_level_module_does_not_resolve_to_this_project(module, tmp_path):
    code = (
        "import importlib.util as u, sys\n"
        f"spec = u.find_spec({module!r})\n"
        "print(spec.origin if spec else 'none')"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert str(ROOT) not in out.stdout


@pytest.mark.slow
def test_wheel_installs_packages_only_under_numbamlp(tmp_path):
    """What `pip install .` installs: build the wheel and list it."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("numbamlp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"numbamlp", next(n for n in top_level if n.endswith(".dist-info"))}
    for expected in ("numbamlp/kernels/cpu_backend.py", "numbamlp/kernels/numpy_backend.py",
                     "numbamlp/cli/main.py", "numbamlp/reference.py"):
        assert expected in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "numbamlp = numbamlp.cli.main:command_line" in zipfile.ZipFile(wheel).read(entry_points).decode()
