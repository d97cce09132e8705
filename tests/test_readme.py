"""README's two set-up commands are the ones CI runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_setup_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- setup -->\s*```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README needs a ```bash block right after <!-- setup -->"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_them():
    commands = readme_setup_commands()
    assert len(commands) == 2
    install_demo, test_cmd = commands
    assert "pip install" in install_demo and "mouse-rl demo" in install_demo
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci
    assert install_demo.split("&&")[0].strip() in ci and "mouse-rl demo" in ci
