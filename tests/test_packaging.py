"""The distribution ships every package: setup.cfg lists them one by one, so a new one must be added."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setup_cfg_lists_every_package_with_an_init():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    listed = set(config["options"]["packages"].split())
    on_disk = {"training"}
    src = ROOT / "src"
    for init in (src / "napari_chromagan").rglob("__init__.py"):
        on_disk.add(".".join(init.parent.relative_to(src).parts))
    assert {
        "napari_chromagan",
        "napari_chromagan.napari._widgets",
        "napari_chromagan.cli",
    } <= on_disk
    assert listed == on_disk, (
        f"add the missing packages to setup.cfg [options] packages: {on_disk - listed}"
    )


def _wheel_metadata():
    from build.util import project_wheel_metadata

    # the metadata a wheel built from this tree carries: what PyPI shows and the napari hub reads
    return project_wheel_metadata(ROOT, isolated=False)


def test_napari_hub_metadata():
    meta = _wheel_metadata()
    classifiers = meta.get_all("Classifier")
    assert "Framework :: napari" in classifiers  # what lists the plugin on the napari hub
    assert meta["Name"] == "napari-chromagan"
    assert 20 <= len(meta["Summary"]) <= 200
    assert meta["Description-Content-Type"] == "text/markdown"
    description = meta.get_payload() or meta["Description"]
    assert description.startswith("# napari-chromagan") and "## Use in napari" in description
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert urls["Paper"].startswith("https://")
    # the Python versions listed are the ones python_requires allows
    versions = sorted(
        c.rsplit(":: ", 1)[1]
        for c in classifiers
        if c.startswith("Programming Language :: Python :: 3.")
    )
    assert versions and meta["Requires-Python"] == f">={versions[0]}"


def test_ci_workflow_runs_what_ci_runs_on_the_python_versions_listed():
    import yaml

    workflow = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    test_job = workflow["jobs"]["test"]
    runs = [step.get("run", "") for step in test_job["steps"]]
    assert "bash .ci/run" in runs  # the same commands as CI here: scripts/setup.sh, then pytest
    ci = (ROOT / ".ci/run").read_text().splitlines()
    setup, pytest_ = ci.index("bash scripts/setup.sh"), ci.index(".venv/bin/python -m pytest")
    # the formatter and the linter run after the set-up (which installs ruff) and before the
    # tests, so a style failure is reported in seconds, not after the test run
    assert setup < ci.index(".venv/bin/ruff format --check .") < pytest_
    assert setup < ci.index(".venv/bin/ruff check .") < pytest_
    assert test_job["strategy"]["matrix"]["platform"] == ["ubuntu-latest"]
    classifiers = _wheel_metadata().get_all("Classifier")
    listed = sorted(
        c.rsplit(":: ", 1)[1]
        for c in classifiers
        if c.startswith("Programming Language :: Python :: 3.")
    )
    assert sorted(test_job["strategy"]["matrix"]["python-version"]) == listed
    # a headless display for Qt, and the package built and inspected, as the template does
    uses = [step.get("uses", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(u.startswith("pyvista/setup-headless-display-action") for u in uses)
    assert any(u.startswith("hynek/build-and-inspect-python-package") for u in uses)


def test_pre_commit_runs_ruff_with_the_project_rules_and_napari_plugin_checks():
    import yaml

    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: (repo, hook) for repo in config["repos"] for hook in repo["hooks"]}
    for name in ("ruff-check", "ruff-format"):
        repo, hook = hooks[name]
        assert repo["repo"].endswith("/ruff-pre-commit")
        assert not hook.get("args")  # the settings come from pyproject.toml
    # the hook runs the ruff that the testing extra installs for .ci/run
    config_cfg = configparser.ConfigParser()
    config_cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    testing = config_cfg["options.extras_require"]["testing"].split()
    (pin,) = [r for r in testing if r.startswith("ruff")]
    assert pin == f"ruff=={hooks['ruff-check'][0]['rev'].lstrip('v')}"
    assert hooks["napari-plugin-checks"][0]["repo"].endswith("/napari-plugin-checks")
    # napari-plugin-checks' rule, checked here too: no PyQt5/PySide2 in the dependencies
    requires = config_cfg["options"]["install_requires"].split()
    assert not {"PyQt5", "PySide2", "PyQt6", "PySide6"} & set(requires)
