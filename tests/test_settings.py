"""Typed settings name the source and key of a bad value; the CLI starts without importing the server."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from governance.config import ConfigError, load_settings, write_instance_config


@pytest.mark.parametrize(("key", "value", "message"), [
    ("vllm_gpu_memory_utilization", "lots", "valid number"),
    ("vllm_gpu_memory_utilization", "1.5", "less than or equal to 1"),
    ("default_locale", "klingon", "'en' or 'zh_CN'"),
    ("audit_concurrency", "-5", "greater than or equal to 1"),
    ("scheduler_interval", "0", "greater than or equal to 10"),
    ("audit_lang", "fr", "'zh' or 'en'"),
    ("audit_dispatch", "sometimes", "'auto', 'thread', 'inline', 'queue' or 'celery'"),
    ("smtp_port", "70000", "less than or equal to 65535"),
    ("broker_url", "http://redis", "should match pattern"),
    ("demo_mode", "perhaps", "valid boolean"),
])
def test_a_bad_value_in_the_environment_names_the_variable(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path, environ={f"GOVERNANCE_{key.upper()}": value})
    text = str(raised.value)
    assert text.startswith(f"environment GOVERNANCE_{key.upper()}: setting '{key}':") and message in text


def test_a_bad_value_in_the_file_names_the_file_and_the_environment_overrides_it(tmp_path):
    write_instance_config(tmp_path, {"audit_concurrency": 8})
    (tmp_path / "config.toml").write_text('audit_concurrency = -5\n')
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'config.toml'}: setting 'audit_concurrency'"):
        load_settings(tmp_path, environ={})
    assert load_settings(tmp_path, environ={"GOVERNANCE_AUDIT_CONCURRENCY": "4"}).audit_concurrency == 4
    (tmp_path / "config.toml").write_text('audit_concurency = 4\n')
    with pytest.raises(ConfigError, match="unknown setting 'audit_concurency'"):
        load_settings(tmp_path, environ={})


def test_values_are_typed_secrets_hidden_and_lists_read_from_commas(tmp_path):
    settings = load_settings(tmp_path, environ={"GOVERNANCE_VLLM_GPU_MEMORY_UTILIZATION": "0.85",
                                                "GOVERNANCE_TRUST_ROOTS": "a.pem, b.pem",
                                                "GOVERNANCE_SECRET_KEY": "x" * 40})
    assert settings.vllm_gpu_memory_utilization == 0.85
    assert settings.trust_roots == ("a.pem", "b.pem")
    assert "x" * 40 not in repr(settings) and settings.secret_key.get_secret_value() == "x" * 40
    with pytest.raises(ConfigError, match=r"replace\(\): setting 'audit_batch'"):
        settings.replace(audit_batch=0)
    assert settings.replace(audit_batch=7).audit_batch == 7


def test_the_command_list_is_the_commands_own_help():
    """``govern --help`` prints the table in governance.cli without importing the commands: it must not drift."""
    from governance.cli import COMMANDS, cli

    context = click.Context(cli)
    for name, (_target, help_text) in COMMANDS.items():
        assert cli.get_command(context, name).get_short_help_str(limit=200) == help_text, name


BLOCKED = ("flask", "sqlalchemy", "sqlmodel", "pydantic", "weasyprint", "pandas", "celery", "pyhanko", "yaml",
           "numpy", "scipy", "matplotlib", "alembic")


def test_govern_submit_runs_where_the_server_stack_is_absent():
    """The `client` extra installs click and httpx only: `govern submit` must not import the server's packages."""
    script = ("import sys\n"
              f"for name in {BLOCKED!r}: sys.modules[name] = None  # importing it now raises ImportError\n"
              "from governance.cli import main\n"
              "sys.argv = ['govern', 'submit', '--help']\n"
              "main()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--deployment" in done.stdout
    listing = subprocess.run([sys.executable, "-c", script.replace("'submit', '--help'", "'--help'")],
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "submit" in listing.stdout, listing.stderr
