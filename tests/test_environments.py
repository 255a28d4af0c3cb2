"""The cluster environment and the virtual environment come from one source of truth."""

import sys

import yaml
from conftest import REPO
from pip._internal.network.session import PipSession
from pip._internal.req.req_file import parse_requirements

ENV_FILE = REPO / "envs" / "cluster.yaml"


def pip_section() -> list[str]:
    env = yaml.safe_load(ENV_FILE.read_text())
    return next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))


def test_the_conda_environment_installs_requirements_txt_and_this_package(tmp_path, monkeypatch):
    # conda hands the pip section to pip as a requirements file; read it the way pip does, from the project dir
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PWD", str(REPO))
    handed = tmp_path / "condaenv.requirements.txt"
    handed.write_text("\n".join(pip_section()) + "\n")
    parsed = list(parse_requirements(str(handed), session=PipSession()))
    editable = [req for req in parsed if req.is_editable]
    pinned = {req.requirement for req in parsed if not req.is_editable}
    assert [req.requirement for req in editable] == [str(REPO)]
    listed = {line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()}
    assert pinned == {line for line in listed if line and not line.startswith("#")}


def test_the_conda_python_is_the_one_the_project_runs_on():
    env = yaml.safe_load(ENV_FILE.read_text())
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python="))
    assert python == f"python={sys.version_info.major}.{sys.version_info.minor}"
