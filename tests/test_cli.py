"""The bastion-balance command: demo, env and TOML accounts, output shapes, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bastion_balance import cli
from bastion_balance.testing import KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(list(argv), environ=environ or {}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


class TestDemo:
    def test_plain_table(self) -> None:
        """The demo prints every simulated venue and the USD total, and exits 0."""
        code, out, err = run("demo", "--plain")
        assert code == 0
        assert "kraken" in out and "382.2032" in out and "TOTAL (USD)" in out
        assert "no keys, no network" in err

    def test_rich_table(self) -> None:
        """With rich installed the demo draws a rich table."""
        pytest.importorskip("rich")
        code, out, _ = run("demo")
        assert code == 0
        assert "┃ account" in out

    def test_json_is_to_dict(self) -> None:
        """--json prints Portfolio.to_dict() with exact numbers."""
        code, out, _ = run("demo", "--json")
        data = json.loads(out, parse_float=Decimal)
        assert code == 0
        assert data["complete"] is True
        assert data["balances"]["kraken"]["total"] == Decimal("382.2032")

    def test_bastion_shape(self) -> None:
        """--bastion prints exactly the seed-000 keys."""
        _, out, _ = run("demo", "--bastion")
        assert set(json.loads(out)) == {"total_usd", "available_margin_usd", "exchanges"}

    def test_console_script(self) -> None:
        """The installed console script runs the demo in a fresh process."""
        result = subprocess.run(
            [sys.executable, "-c", "from bastion_balance.cli import main; main()", "demo", "--plain"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "TOTAL (USD)" in result.stdout


class TestFetch:
    def test_no_accounts_is_usage_error(self) -> None:
        """Without any configured account the command explains how and exits 2."""
        code, _, err = run("--plain", environ={})
        assert code == 2
        assert "BASTION_KRAKEN_API_KEY" in err

    def test_env_accounts_are_built(self) -> None:
        """BASTION_<VENUE>_<FIELD> variables (or _FILE) make one provider per venue."""
        accounts = cli.accounts_from_env(
            {"BASTION_KRAKEN_API_KEY": KRAKEN_TEST_KEY, "BASTION_KRAKEN_API_SECRET": KRAKEN_TEST_SECRET}
        )
        assert accounts == [{"venue": "kraken", "api_key": KRAKEN_TEST_KEY, "api_secret": KRAKEN_TEST_SECRET}]
        (provider,) = cli.build_providers(accounts)
        assert provider.label == "kraken"

    def test_env_file_variant(self, tmp_path: Path) -> None:
        """A _FILE variable reads the credential from a file."""
        secret = tmp_path / "secret"
        secret.write_text(KRAKEN_TEST_SECRET + "\n")
        accounts = cli.accounts_from_env(
            {"BASTION_KRAKEN_API_KEY": "k", "BASTION_KRAKEN_API_SECRET_FILE": str(secret)}
        )
        assert accounts[0]["api_secret"] == KRAKEN_TEST_SECRET

    def test_missing_file(self, tmp_path: Path) -> None:
        """An unreadable credential file is a configuration error naming the variable."""
        with pytest.raises(cli.ConfigurationError, match="BASTION_KRAKEN_API_SECRET_FILE"):
            cli.accounts_from_env({"BASTION_KRAKEN_API_SECRET_FILE": str(tmp_path / "nope")})

    @pytest.mark.parametrize(
        ("account", "message"),
        [
            ({"api_key": "k"}, "venue"),
            ({"venue": "nowhere"}, "unknown venue"),
            ({"venue": "kraken", "api_key": "k"}, "missing api_secret"),
            (
                {"venue": "kraken", "api_key": "k", "api_secret": KRAKEN_TEST_SECRET, "colour": 1},
                "unknown settings",
            ),
        ],
    )
    def test_bad_accounts(self, account: dict[str, object], message: str) -> None:
        """Accounts without a venue, with unknown settings or missing credentials are refused."""
        with pytest.raises(cli.ConfigurationError, match=message):
            cli.build_providers([account])

    def test_toml_config(self, tmp_path: Path) -> None:
        """[[account]] tables take credentials inline, from _env variables or _file paths."""
        secret = tmp_path / "secret"
        secret.write_text(KRAKEN_TEST_SECRET)
        config = tmp_path / "config.toml"
        config.write_text(
            '[[account]]\nvenue = "kraken"\nlabel = "main"\napi_key_env = "KEY"\n'
            f'api_secret_file = "{secret}"\n\n[[account]]\nvenue = "kraken"\nlabel = "alt"\n'
            f'api_key = "k2"\napi_secret = "{KRAKEN_TEST_SECRET}"\n'
        )
        config.chmod(0o600)
        warn = io.StringIO()
        accounts = cli.accounts_from_toml(config, {"KEY": "k1"}, warn)
        assert [a["label"] for a in accounts] == ["main", "alt"]
        assert accounts[0]["api_key"] == "k1"
        assert accounts[0]["api_secret"] == KRAKEN_TEST_SECRET
        assert warn.getvalue() == ""

    def test_toml_readable_by_others_warns(self, tmp_path: Path) -> None:
        """A config file readable by other users draws a warning."""
        config = tmp_path / "config.toml"
        config.write_text("")
        config.chmod(0o644)
        warn = io.StringIO()
        assert cli.accounts_from_toml(config, {}, warn) == []
        assert "readable by other users" in warn.getvalue()

    @pytest.mark.parametrize(
        ("text", "message"),
        [("account = 3", "tables"), ("[[account", "not valid TOML"), ('[[account]]\nx_env = "NOPE"', "NOPE")],
    )
    def test_bad_toml(self, tmp_path: Path, text: str, message: str) -> None:
        """Malformed config files are configuration errors."""
        config = tmp_path / "c.toml"
        config.write_text(text)
        with pytest.raises(cli.ConfigurationError, match=message):
            cli.accounts_from_toml(config, {}, io.StringIO())

    def test_missing_config(self, tmp_path: Path) -> None:
        """--config naming a missing file exits 2."""
        code, _, err = run("--config", str(tmp_path / "none.toml"))
        assert code == 2
        assert "cannot read config" in err

    def test_unreachable_venue_exit_3(self, tmp_path: Path) -> None:
        """When no venue answers the command exits 3 and says why."""
        config = tmp_path / "c.toml"
        config.write_text(
            f'[[account]]\nvenue = "kraken"\napi_key = "k"\napi_secret = "{KRAKEN_TEST_SECRET}"\n'
            'base_url = "http://127.0.0.1:9"\n'
        )
        code, out, _ = run("--config", str(config), "--plain", "--timeout", "2")
        assert code == 3
        assert "error  kraken: TransportError" in out


def test_exit_code_partial() -> None:
    """Some venues answering and some failing is exit code 1."""
    from datetime import UTC, datetime

    from bastion_balance import Balance, Portfolio

    balance = Balance(
        label="a",
        exchange="x",
        currency="USD",
        total=Decimal(1),
        available=Decimal(1),
        fetched_at=datetime.now(UTC),
    )
    partial = Portfolio(balances={"a": balance}, errors={"b": ValueError("x")}, fetched_at=datetime.now(UTC))
    assert cli._exit_code(partial, 2) == 1


def test_plain_fallback_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without rich the command prints the plain table."""
    monkeypatch.setitem(sys.modules, "rich", None)
    assert cli._rich_available() is False
    code, out, _ = run("demo")
    assert code == 0
    assert "-----------" in out


class TestEdges:
    def test_warnings_are_printed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A portfolio's warnings reach the table's notes, one line each."""
        from datetime import UTC, datetime

        import bastion_balance as bb

        portfolio = bb.Portfolio(
            balances={}, warnings=("kraken: 2 holdings not counted",), fetched_at=datetime.now(UTC)
        )
        monkeypatch.setattr(cli, "_demo", lambda *args: (portfolio, 0))
        code, out, _ = run("demo", "--plain")
        assert code == 0
        assert "warning  kraken: 2 holdings not counted" in out

    def test_ctrl_c_during_the_fetch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Ctrl-C while fetching: exit 130 and one line, no traceback."""

        def interrupted(*args: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(cli, "_demo", interrupted)
        code, out, err = run("demo", "--plain")
        assert (code, out, err.strip().splitlines()[-1]) == (130, "", "bastion-balance: interrupted")

    def test_main_exits_with_the_code(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The console script exits with run()'s code; Ctrl-C outside the fetch is 130 too."""
        monkeypatch.setattr(cli, "run", lambda: 3)
        with pytest.raises(SystemExit) as info:
            cli.main()
        assert info.value.code == 3

        def interrupted() -> int:
            raise KeyboardInterrupt

        monkeypatch.setattr(cli, "run", interrupted)
        with pytest.raises(SystemExit) as info:
            cli.main()
        assert info.value.code == 130
        assert capsys.readouterr().err == "bastion-balance: interrupted\n"

    def test_default_config_file_is_read(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without --config, the default config file is used when it exists (and checked)."""
        config = tmp_path / "config.toml"
        config.write_text(
            '[[account]]\nvenue = "kraken"\napi_key = "k"\napi_secret = "c2VjcmV0"\nbogus = 1\n'
        )
        config.chmod(0o600)
        monkeypatch.setattr(cli, "DEFAULT_CONFIG", config)
        code, _, err = run("--plain")
        assert code == 2
        assert "kraken: unknown settings bogus" in err
