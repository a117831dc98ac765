"""The dagster and mlops command lines: the whole graph run as a user runs it (in subprocesses),
and the `mlops` commands' help, errors and bring-your-own-dataset tooling."""

import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from mlops_platform import settings as settings_module
from mlops_platform.cli import build_parser, main
from mlops_platform.datasets.spec import load_spec, shipped_spec_path

PACKAGE = Path(__file__).resolve().parents[1] / "mlops_platform"
MLOPS = str(Path(sys.executable).parent / "mlops")


def _run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["MLOPS_HOME"]
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_simulate_validate_and_materialize_the_whole_graph_from_the_cli(cli_env, adult_settings, monkeypatch):
    adult_settings.home.mkdir(parents=True)
    landed = _run(["mlops", "simulate-batches", "--reference"], cli_env)
    assert landed.stdout.count("landed ") == 4

    validated = _run(["dagster", "definitions", "validate", "-m", "mlops_platform.definitions"], cli_env)
    assert "Validation successful" in validated.stdout + validated.stderr

    _run(
        [
            "dagster",
            "asset",
            "materialize",
            "-m",
            "mlops_platform.definitions",
            "--select",
            "not group:monitoring",
            "--partition-range",
            "2026-01-01...2026-01-04",
        ],
        cli_env,
        timeout=600,
    )
    monkeypatch.setenv("DAGSTER_HOME", cli_env["DAGSTER_HOME"])  # our dagster.yaml reads it
    with dg.DagsterInstance.get() as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("raw_data")) == {
            "2026-01-01",
            "2026-01-02",
            "2026-01-03",
            "2026-01-04",
        }
        training = instance.fetch_materializations(dg.AssetKey("training_set"), limit=1).records
        assert training and training[0].asset_materialization.metadata["rows"].value == 600
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("training_set"), "training_set_is_sound")]
        )
        assert (
            check[dg.AssetCheckKey(dg.AssetKey("training_set"), "training_set_is_sound")].status.value
            == "SUCCEEDED"
        )

        registered = instance.fetch_materializations(dg.AssetKey("registered_model_version"), limit=1).records
        assert registered[0].asset_materialization.metadata["alias"].value == "challenger"

    status = _run(["mlops", "status"], cli_env)
    assert "landing files    4" in status.stdout and "training_set" in status.stdout
    assert "aliases challenger" in status.stdout


@pytest.mark.slow
def test_the_cli_refuses_bad_arguments_with_a_message(cli_env, adult_settings):
    adult_settings.home.mkdir(parents=True)
    done = subprocess.run(
        ["mlops", "simulate-batches", "--shift", "nonsense"], env=cli_env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "expected COLUMN=+N" in done.stderr


def _subcommands() -> dict:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.choices and a.dest == "command"]
    return action.choices


def _variables_read() -> set[str]:
    """Every MLOPS_* variable the package reads, found in its source, and DAGSTER_HOME."""
    found = {"DAGSTER_HOME"}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r"""(?:environ\.get|env\.get|getenv)\(\s*["'](MLOPS_[A-Z0-9_]+)["']""", text))
        found |= set(re.findall(r"""^[A-Z_]+_VARIABLE = ["'](MLOPS_[A-Z0-9_]+)["']""", text, re.MULTILINE))
    # MLOPS_KSERVE_* are read by prefix
    found |= {name for name, _, _ in settings_module.ENVIRONMENT if name.startswith("MLOPS_KSERVE_")}
    return found


def test_help_lists_every_subcommand_with_one_line_and_every_environment_variable(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    commands = _subcommands()
    assert {"init", "check-spec", "demo", "simulate-batches", "serve", "simulate-traffic", "status"} <= set(
        commands
    )
    for name in commands:
        assert re.search(rf"^    {re.escape(name)}\s", shown, re.MULTILINE), f"{name} has no help line"
    variables = _variables_read()
    assert len(variables) >= 20
    epilog = shown.split("environment variables:")[1]
    listed = re.findall(r"^  ([A-Z_]+)\s+\S", epilog, re.MULTILINE)
    assert sorted(variables - set(listed)) == []
    assert sorted(set(listed) - variables) == []  # nothing listed that the code does not read
    assert len(listed) == len(set(listed))  # one line each


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_of_every_subcommand_shows_its_default(command):
    text = _subcommands()[command].format_help()
    options = text.split("options:")[1]
    blocks = re.split(r"\n(?=  -)", options.strip("\n"))
    for block in blocks:
        flags = block.split()[0]
        if flags.startswith("-h"):
            continue
        assert "default" in block or "(required)" in block, f"mlops {command} {flags}: no default shown"


def _heart_csv(folder: Path) -> Path:
    frame = pd.DataFrame(
        {
            "age": [40 + i % 30 for i in range(200)],
            "cp": [i % 4 for i in range(200)],
            "target": [int(i % 3 == 0) for i in range(200)],
        }
    )
    path = folder / "heart.csv"
    frame.to_csv(path, index=False)
    return path


def test_init_then_check_spec_from_the_command_line(tmp_path, capsys):
    csv = _heart_csv(tmp_path)
    assert (
        main(["init", str(csv), "--label", "target", "--sensitive", "age", "-o", str(tmp_path / "s.yaml")])
        == 0
    )
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 's.yaml'}: 200 rows, label target (positive class '1')" in out
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.columns["cp"].domain == ["0", "1", "2", "3"]
    assert main(["check-spec", str(tmp_path / "s.yaml")]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {tmp_path / 's.yaml'} fits its source")

    raw = yaml.safe_load((tmp_path / "s.yaml").read_text())
    raw["columns"]["cp"]["domain"] = [0, 1]
    raw["columns"]["ghost"] = {"type": "float"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    assert main(["check-spec", str(tmp_path / "bad.yaml")]) == 2
    problems = capsys.readouterr().out.splitlines()
    assert problems == [
        f"{tmp_path / 'bad.yaml'}: columns.ghost: declared, but the source heart.csv has no column 'ghost'",
        f"{tmp_path / 'bad.yaml'}: columns.cp: '2', '3' are not in the domain [0, 1] "
        "(100 of 200 sampled rows)",
    ]


def test_check_spec_defaults_to_mlops_dataset_spec(monkeypatch, capsys):
    monkeypatch.delenv("MLOPS_DATASET_SPEC", raising=False)
    assert main(["check-spec"]) == 0
    assert f"ok: {shipped_spec_path()} fits its source" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init", "{tmp}/nope.csv", "--label", "y"], "mlops init: {tmp}/nope.csv does not exist"),
        (
            ["init", "{tmp}/heart.csv", "--label", "outcome"],
            "mlops init: --label 'outcome': {tmp}/heart.csv has no",
        ),
        (
            ["init", "{tmp}/heart.csv", "--label", "target", "-o", "{tmp}/missing/spec.yaml"],
            "mlops init: -o {tmp}/missing/spec.yaml: the folder {tmp}/missing does not exist",
        ),
        (
            ["init", "{tmp}/heart.csv", "--label", "target", "-o", "{tmp}/heart.csv"],
            "mlops init: -o {tmp}/heart.csv: that is the data file; write the spec to a .yaml file",
        ),
        (
            ["init", "{tmp}/heart.csv", "--label", "cp"],
            "mlops init: {tmp}/heart.csv: --label 'cp' has 4 distinct",
        ),
        (["check-spec", "{tmp}/nope.yaml"], "dataset spec {tmp}/nope.yaml does not exist"),
        (["check-spec", "{tmp}/broken.yaml"], "{tmp}/broken.yaml: not valid YAML: "),
        (["init", "{tmp}/heart.csv"], "mlops init: error: the following arguments are required: --label"),
        (
            ["check-spec", "--sample-rows", "0"],
            "mlops check-spec: error: argument --sample-rows: must be at least 1",
        ),
    ],
)
def test_errors_are_one_line_naming_the_file_field_or_flag(tmp_path, capsys, args, message):
    _heart_csv(tmp_path)
    (tmp_path / "broken.yaml").write_text("columns: [\n")
    argv = [a.format(tmp=tmp_path) for a in args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    shown = (captured.err + captured.out).strip()
    assert shown.startswith(message.format(tmp=tmp_path)), shown
    assert len(shown.splitlines()) == 1 and "Traceback" not in shown


def test_the_mlops_script_reports_errors_in_one_line_without_a_traceback(tmp_path):
    bad = tmp_path / "data.csv"
    bad.write_bytes(b"a,y\n1,p\n2,caf\xe9\n")
    for argv, message in [
        ([MLOPS, "init", str(bad), "--label", "y"], f"mlops init: {bad}: line 3: not UTF-8"),
        (
            [MLOPS, "init", str(tmp_path / "none.csv"), "--label", "y"],
            f"mlops init: {tmp_path / 'none.csv'} does",
        ),
    ]:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr.startswith(message), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
