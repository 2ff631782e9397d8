"""The bastion-balance command: demo, venues, env and TOML accounts, rates, output shapes,
exit codes and the lines that explain them, help and version, warnings that never show a value."""

from __future__ import annotations

import io
import json
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import bastion_balance as bb
from bastion_balance import cli
from bastion_balance.providers import VENUES
from bastion_balance.testing import (
    KRAKEN_TEST_KEY,
    KRAKEN_TEST_SECRET,
    LoopbackServer,
    SimulatedKraken,
    SimulatedKrakenTicker,
    Simulator,
)

#: Kraken's documented TradeBalance answer, as the simulator serves it: e = total, mf = available.
KRAKEN_TOTAL, KRAKEN_FREE = Decimal("382.2032"), Decimal("375.1678")
WRONG_SECRET = "d3JvbmctYnV0LXdlbGwtZm9ybWVkLXNlY3JldC12YWx1ZQ=="
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run(
    *argv: str, environ: dict[str, str] | None = None, out: Any = None, err: Any = None
) -> tuple[int, str, str]:  # noqa: ANN401
    out, err = out or io.StringIO(), err or io.StringIO()
    code = cli.run(list(argv), environ=environ or {}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def kraken() -> Iterator[LoopbackServer]:
    """Kraken (TradeBalance and the public ticker) on a real loopback socket."""
    simulator = Simulator(SimulatedKraken(host="127.0.0.1"), SimulatedKrakenTicker(host="127.0.0.1"))
    with LoopbackServer(simulator) as server:
        yield server


def toml_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def write_config(tmp_path: Path, *accounts: dict[str, object], extra: str = "", mode: int = 0o600) -> Path:
    text = "".join(
        "[[account]]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in account.items()) + "\n"
        for account in accounts
    )
    config = tmp_path / "config.toml"
    config.write_text(text + extra)
    config.chmod(mode)
    return config


def kraken_account(server: LoopbackServer | None, **settings: object) -> dict[str, object]:
    url = server.url if server is not None else "http://127.0.0.1:9"  # port 9: nothing listens
    return {
        "venue": "kraken",
        "api_key": KRAKEN_TEST_KEY,
        "api_secret": KRAKEN_TEST_SECRET,
        "base_url": url,
        **settings,
    }


class TestDemo:
    def test_plain_table(self) -> None:
        """The demo prints every simulated venue, share and free, the totals, the rates it used, the
        summary line and a status that agrees with the exit code."""
        code, out, err = run("demo", "--plain")
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split() == ["account", "venue", "currency", "total", "available", "share", "free"]
        assert [line.split()[0] for line in lines[2 : 2 + len(VENUES)]] == list(VENUES)
        assert "382.2032" in out and "99,996,952.15429778" in out and "100,153,545.43099210" in out
        assert lines[-3:] == [
            "rates: USDT 1 (par, assumed)",
            "$100,153,545.43 across 7 exchanges, $99,674,634.73 available (99.5% free)",
            "7 accounts, complete",
        ]
        assert "no keys, no network" in err and "fetching 7 accounts..." in err

    def test_not_a_terminal_is_plain(self) -> None:
        """With rich installed, output that is not a terminal is still plain text, every digit."""
        pytest.importorskip("rich")
        code, out, _ = run("demo")
        assert code == 0
        assert "┃" not in out and "…" not in out and "100,153,545.43099210" in out

    def test_rich_on_a_terminal(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """On a terminal: the rich table when it fits, one block per account when it does not."""
        pytest.importorskip("rich")
        monkeypatch.setenv("COLUMNS", "150")
        code, out, _ = run("demo", out=FakeTTY())
        out = ANSI.sub("", out)
        assert code == 0
        assert "┃ account" in out and "share" in out and "free" in out
        monkeypatch.setenv("COLUMNS", "60")
        _, out, _ = run("demo", out=FakeTTY())
        out = ANSI.sub("", out)
        assert "┃" not in out and "99,996,952.15429778" in out and "  available" in out

    def test_spinners_on_a_terminals_stderr(self) -> None:
        """With stderr a terminal, a spinner line per account (not the 'fetching' line)."""
        pytest.importorskip("rich")
        code, out, err = run("demo", "--account", "kraken", "--account", "bybit", err=FakeTTY())
        assert code == 0
        assert "fetching" not in err.split("network", 1)[1].split("\n", 1)[0]
        assert "✓" in err and "kraken" in err and "bybit" in err
        assert "┃" not in out  # stdout is not a terminal

    def test_plain_means_no_spinner(self) -> None:
        _, _, err = run("demo", "--plain", err=FakeTTY())
        assert "fetching 7 accounts..." in err and "✓" not in err

    def test_json_is_to_dict(self) -> None:
        """--json prints Portfolio.to_dict() with exact numbers and the rates' sources."""
        code, out, _ = run("demo", "--json")
        data = json.loads(out, parse_float=Decimal)
        assert code == 0
        assert data["complete"] is True
        assert data["balances"]["kraken"]["total"] == KRAKEN_TOTAL
        assert data["rate_sources"]["USDT"]["assumed"] is True

    def test_bastion_shape(self) -> None:
        """--bastion prints exactly the seed-000 keys."""
        _, out, _ = run("demo", "--bastion")
        assert set(json.loads(out)) == {"total_usd", "available_margin_usd", "exchanges"}

    def test_account_selects(self) -> None:
        """--account fetches only the accounts named; an unknown label is a usage error naming the known."""
        code, out, err = run("demo", "--json", "--account", "kraken", "--account", "bybit")
        assert code == 0
        assert set(json.loads(out)["balances"]) == {"kraken", "bybit"}
        code, _, err = run("demo", "--account", "krakn")
        assert code == 2
        assert "--account krakn: no such account; the accounts are kraken, rails" in err

    def test_rate_values_a_currency(self) -> None:
        """--rate CUR=X replaces a rate; the rates line says it was given."""
        code, out, _ = run("demo", "--plain", "--rate", "usdt=0.9985", "--account", "binance")
        assert code == 0
        assert "rates: USDT 0.9985 (given)" in out
        total = f"{Decimal('31.02261200') * Decimal('0.9985'):,f}"  # the demo's Binance figures, exact
        assert [line.split()[:4] for line in out.splitlines() if line.startswith("TOTAL")] == [
            ["TOTAL", "USD", total, total]
        ]

    def test_live_rates_from_the_simulated_ticker(self) -> None:
        """--live-rates in the demo asks the simulated Kraken ticker: USDT is quoted, not assumed."""
        code, out, _ = run("demo", "--plain", "--live-rates", "--account", "binance")
        assert code == 0
        (line,) = [line for line in out.splitlines() if line.startswith("rates:")]
        assert line.startswith("rates: USDT 0.99985000 (kraken USDTZUSD last trade, ") and line.endswith("Z)")
        code, out, _ = run("demo", "--json", "--live-rates", "--account", "binance")
        assert json.loads(out)["rate_sources"]["USDT"]["source"] == "kraken"

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--rate", "EUR=1", "--live-rates"], "not allowed with argument"),
            (["--rate", "EUR"], "'EUR' is not CUR=X"),
            (["--rate", "=1"], "is not CUR=X"),
            (["--rate", "EUR=abc"], "rate for EUR must be a Decimal or decimal string"),
            (["--rate", "EUR=-1"], "rate for EUR must be positive"),
            (["--rate", "EUR=1", "--rate", "eur=2"], "--rate EUR is given twice"),
            (["--json", "--bastion"], "not allowed with argument"),
            (["--timeout", "0"], "timeout"),
            (["--watch", "soon"], "'soon' is not an interval"),
            (["--watch", "0s"], "is not an interval"),
            (["--watch", "1s", "--record"], "--watch does not record"),
            (["--nope"], "unrecognized arguments: --nope"),
        ],
    )
    def test_usage_errors(self, argv: list[str], message: str) -> None:
        """Bad options exit 2 with one readable line on stderr, before anything is fetched."""
        code, out, err = run("demo", *argv)
        assert code == 2
        assert out == "" and message in err and "Traceback" not in err

    def test_console_script(self) -> None:
        """The installed console script and `python -m bastion_balance` run the demo in a fresh process."""
        for command in (
            [sys.executable, "-c", "from bastion_balance.cli import main; main()"],
            [sys.executable, "-m", "bastion_balance"],
        ):
            result = subprocess.run(
                [*command, "demo", "--plain"], capture_output=True, text=True, check=False, timeout=60
            )
            assert result.returncode == 0, result.stderr
            assert "7 accounts, complete" in result.stdout

    def test_dunder_main(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """`python -m bastion_balance` is the command (run here in-process)."""
        monkeypatch.setattr(sys, "argv", ["bastion_balance", "--version"])
        with pytest.raises(SystemExit) as info:
            runpy.run_module("bastion_balance", run_name="__main__")
        assert info.value.code == 0
        assert capsys.readouterr().out == f"bastion-balance {bb.__version__}\n"


class TestHelp:
    @pytest.mark.parametrize("command", [[], ["fetch"], ["demo"], ["venues"]])
    def test_version(self, command: list[str]) -> None:
        assert run(*command, "--version") == (0, f"bastion-balance {bb.__version__}\n", "")

    def test_fetch_help_lists_variables_config_and_exit_codes(self) -> None:
        code, out, _ = run("--help")
        assert code == 0
        assert out.startswith("usage: bastion-balance [-h] [--version] [--config PATH]")
        for text in (
            "bastion-balance demo",
            "bastion-balance venues",
            "BASTION_KRAKEN_API_KEY, BASTION_KRAKEN_API_SECRET",
            "BASTION_POLYMARKET_US_CLIENT_ID",
            "end in _FILE",
            "[[account]]",
            'api_key_env = "KRAKEN_KEY"',
            "[rates]",
            'source = "kraken"',
            "--rate and --live-rates do not combine",
            "wins",
            "3 no account answered",
            "--watch INTERVAL",
        ):
            assert text in out, text
        assert run("fetch", "--help")[1] == out

    def test_demo_and_venues_help(self) -> None:
        code, out, _ = run("demo", "--help")
        assert code == 0 and out.startswith("usage: bastion-balance demo") and "simulated venues" in out
        assert "--config" not in out
        code, out, _ = run("venues", "--help")
        assert (
            code == 0 and out.startswith("usage: bastion-balance venues") and "BASTION_BYBIT_API_KEY" in out
        )

    def test_subcommands_keep_their_own_help(self) -> None:
        pytest.importorskip("sqlalchemy")
        code, out, _ = run("history", "--help")
        assert code == 0 and out.startswith("usage: bastion-balance history")


class TestEnvironment:
    def test_no_accounts_is_usage_error(self) -> None:
        """Without any configured account the command explains how and exits 2."""
        code, _, err = run("--plain", environ={})
        assert code == 2
        assert "BASTION_KRAKEN_API_KEY" in err and "bastion-balance venues" in err

    def test_env_accounts_are_built(self) -> None:
        """BASTION_<VENUE>_<FIELD> variables make one provider per venue."""
        warn = io.StringIO()
        accounts = cli.accounts_from_env(
            {"BASTION_KRAKEN_API_KEY": KRAKEN_TEST_KEY, "BASTION_KRAKEN_API_SECRET": KRAKEN_TEST_SECRET}, warn
        )
        assert accounts == [{"venue": "kraken", "api_key": KRAKEN_TEST_KEY, "api_secret": KRAKEN_TEST_SECRET}]
        (provider,) = cli.build_providers(accounts)
        assert provider.label == "kraken"
        assert warn.getvalue() == ""

    def test_env_file_variant_and_its_permissions(self, tmp_path: Path) -> None:
        """A _FILE variable reads the credential from a file; a file others can read draws a warning
        naming the variable and the path, never the value."""
        secret = tmp_path / "secret"
        secret.write_text(KRAKEN_TEST_SECRET + "\n")
        environ = {"BASTION_KRAKEN_API_KEY": "k", "BASTION_KRAKEN_API_SECRET_FILE": str(secret)}
        for mode, warned in ((0o600, False), (0o640, True), (0o604, True), (0o400, False)):
            secret.chmod(mode)
            warn = io.StringIO()
            accounts = cli.accounts_from_env(environ, warn)
            assert accounts[0]["api_secret"] == KRAKEN_TEST_SECRET
            assert bool(warn.getvalue()) is warned
            assert KRAKEN_TEST_SECRET not in warn.getvalue()
        secret.chmod(0o644)
        warn = io.StringIO()
        cli.accounts_from_env(environ, warn)
        assert warn.getvalue() == (
            f"bastion-balance: warning: BASTION_KRAKEN_API_SECRET_FILE: the secret file {secret} is readable "
            "or writable by other users (mode 0644); chmod 600 it\n"
        )

    def test_default_warning_stream_is_stderr(self, capsys: pytest.CaptureFixture[str]) -> None:
        cli.accounts_from_env({"BASTION_KRAKN_API_KEY": "x"})
        assert "unknown variable BASTION_KRAKN_API_KEY" in capsys.readouterr().err

    def test_missing_file(self, tmp_path: Path) -> None:
        """An unreadable credential file is a configuration error naming the variable."""
        with pytest.raises(cli.ConfigurationError, match="BASTION_KRAKEN_API_SECRET_FILE"):
            cli.accounts_from_env({"BASTION_KRAKEN_API_SECRET_FILE": str(tmp_path / "nope")}, io.StringIO())

    def test_unknown_variables_are_named_never_shown(self) -> None:
        """A BASTION_* name nothing reads draws a warning with the closest known name; its value
        (often a secret in the wrong variable) is never printed."""
        environ = {
            "BASTION_KRAKEN_APISECRET": WRONG_SECRET,
            "BASTION_SOMETHING": WRONG_SECRET,
            "BASTION_HISTORY_URL": "sqlite://",
            "BASTION_MCP_TOKEN": WRONG_SECRET,
            "HOME": "/x",
        }
        assert cli.unknown_variables(environ) == ["BASTION_KRAKEN_APISECRET", "BASTION_SOMETHING"]
        code, out, err = run("--plain", environ=environ)
        assert code == 2
        assert (
            "bastion-balance: warning: unknown variable BASTION_KRAKEN_APISECRET is ignored "
            "(did you mean BASTION_KRAKEN_API_SECRET?)"
        ) in err
        assert "unknown variable BASTION_SOMETHING is ignored\n" in err
        assert WRONG_SECRET not in out + err

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

    def test_fetch_from_the_environment(self, kraken: LoopbackServer) -> None:
        """A real fetch over loopback from variables alone: exit 0, the figures, no warning."""
        environ = {
            "BASTION_KRAKEN_API_KEY": KRAKEN_TEST_KEY,
            "BASTION_KRAKEN_API_SECRET": KRAKEN_TEST_SECRET,
            "BASTION_KRAKEN_BASE_URL": kraken.url,
            "BASTION_KRAKEN_LABEL": "main",
        }
        code, out, err = run("--json", environ=environ)
        assert code == 0
        assert json.loads(out, parse_float=Decimal)["balances"]["main"]["total"] == KRAKEN_TOTAL
        assert err == "fetching 1 account...\n"


class TestConfig:
    def test_toml_config(self, tmp_path: Path) -> None:
        """[[account]] tables take credentials inline, from _env variables or _file paths."""
        secret = tmp_path / "secret"
        secret.write_text(KRAKEN_TEST_SECRET)
        secret.chmod(0o600)
        config = write_config(
            tmp_path,
            {"venue": "kraken", "label": "main", "api_key_env": "KEY", "api_secret_file": str(secret)},
            {"venue": "kraken", "label": "alt", "api_key": "k2", "api_secret": KRAKEN_TEST_SECRET},
        )
        warn = io.StringIO()
        accounts = cli.accounts_from_toml(config, {"KEY": "k1"}, warn)
        assert [a["label"] for a in accounts] == ["main", "alt"]
        assert accounts[0]["api_key"] == "k1"
        assert accounts[0]["api_secret"] == KRAKEN_TEST_SECRET
        assert warn.getvalue() == ""

    def test_config_readable_by_others_warns(self, tmp_path: Path) -> None:
        """A config file readable by other users draws a warning (as does its secret file)."""
        secret = tmp_path / "secret"
        secret.write_text(KRAKEN_TEST_SECRET)
        secret.chmod(0o644)
        config = write_config(tmp_path, {"venue": "kraken", "api_secret_file": str(secret)}, mode=0o644)
        warn = io.StringIO()
        cli.accounts_from_toml(config, {}, warn)
        lines = warn.getvalue().splitlines()
        assert lines == [
            f"bastion-balance: warning: config {config} is readable or writable by other users (mode 0644); "
            "chmod 600 it",
            f"bastion-balance: warning: api_secret_file: the secret file {secret} is readable or writable by "
            "other users (mode 0644); chmod 600 it",
        ]

    def test_unknown_tables_warn(self, tmp_path: Path) -> None:
        """A table the config does not know is ignored with a warning and the likely meant name."""
        config = write_config(
            tmp_path, extra='timeout = 3\n[[acount]]\nvenue = "kraken"\n\n[rate]\nEUR = 1\n'
        )
        warn = io.StringIO()
        assert cli.read_config(config, {}, warn).accounts == []
        lines = warn.getvalue().splitlines()
        assert "unknown table 'timeout' is ignored; the tables are" in lines[0]
        assert lines[1].endswith(
            "unknown table 'acount' is ignored (did you mean [[account]]?); the tables are "
            "[[account]] and [rates]"
        )
        assert "unknown table 'rate' is ignored (did you mean [rates]?)" in lines[2]

    def test_rates_table(self, tmp_path: Path) -> None:
        """[rates]: currency = rate (numbers are read exactly, never as floats), or a source."""
        config = write_config(tmp_path, extra='[rates]\neur = 1.0842\nGBP = "1.2675"\nJPY = 1\n')
        read = cli.read_config(config, {}, io.StringIO())
        assert read.rates == {"EUR": Decimal("1.0842"), "GBP": "1.2675", "JPY": 1}
        assert read.rate_source is None
        config = write_config(tmp_path, extra='[rates]\nsource = "kraken"\n')
        assert cli.read_config(config, {}, io.StringIO()).rate_source == "kraken"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("account = 3", "tables"),
            ("[[account", "not valid TOML"),
            ('[[account]]\nx_env = "NOPE"', "NOPE"),
            ("rates = 3", r"\[rates\] is a table"),
            ('[rates]\nsource = "oracle"', "'oracle' is not a rate source; known: kraken"),
            ('[rates]\nsource = "kraken"\nEUR = 1', "source = 'kraken' and fixed rates"),
            ("[rates]\nEUR = 1\neur = 2", "names EUR twice"),
        ],
    )
    def test_bad_toml(self, tmp_path: Path, text: str, message: str) -> None:
        """Malformed config files are configuration errors."""
        config = tmp_path / "c.toml"
        config.write_text(text)
        with pytest.raises(cli.ConfigurationError, match=message):
            cli.read_config(config, {}, io.StringIO())

    def test_missing_config(self, tmp_path: Path) -> None:
        """--config naming a missing file exits 2."""
        code, _, err = run("--config", str(tmp_path / "none.toml"))
        assert code == 2
        assert "cannot read config" in err

    def test_default_config_file_is_read(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without --config, the default config file is used when it exists (and checked)."""
        config = write_config(
            tmp_path, {"venue": "kraken", "api_key": "k", "api_secret": "c2VjcmV0", "bogus": 1}
        )
        monkeypatch.setattr(cli, "DEFAULT_CONFIG", config)
        code, _, err = run("--plain")
        assert code == 2
        assert "kraken: unknown settings bogus" in err

    def test_the_config_wins_over_variables_and_says_so(self, kraken: LoopbackServer, tmp_path: Path) -> None:
        """With a config file and account variables both present, the config file is used and a
        note names the variables ignored (never their values)."""
        config = write_config(tmp_path, kraken_account(kraken, label="from-config"))
        environ = {"BASTION_KRAKEN_API_KEY": WRONG_SECRET, "BASTION_BYBIT_API_SECRET_FILE": "/nope"}
        code, out, err = run("--config", str(config), "--json", environ=environ)
        assert code == 0
        assert set(json.loads(out)["balances"]) == {"from-config"}
        assert (
            f"bastion-balance: note: reading the accounts from {config}, which wins over BASTION_* variables; "
            "ignoring BASTION_BYBIT_API_SECRET_FILE, BASTION_KRAKEN_API_KEY"
        ) in err
        assert WRONG_SECRET not in out + err


class TestOutcomes:
    def test_unreachable_venue_exit_3(self, tmp_path: Path) -> None:
        """When no venue answers: exit 3, the status says so (no '$0.00' table), the reason on stderr."""
        config = write_config(tmp_path, kraken_account(None))
        code, out, err = run("--config", str(config), "--plain", "--timeout", "2")
        assert code == 3
        assert out == "no account answered: 1 failed\n"
        (line,) = [line for line in err.splitlines() if "kraken" in line]
        assert line.startswith("bastion-balance: kraken failed: TransportError: ")

    def test_bastion_with_a_rejected_key_says_why(self, kraken: LoopbackServer, tmp_path: Path) -> None:
        """--bastion with a rejected key: the JSON on stdout, exit 3, and the reason on stderr, one
        line, with neither the key nor the secret anywhere."""
        config = write_config(tmp_path, kraken_account(kraken, api_secret=WRONG_SECRET))
        code, out, err = run("--config", str(config), "--bastion")
        assert code == 3
        assert json.loads(out) == {"total_usd": 0, "available_margin_usd": 0, "exchanges": {}}
        assert err.splitlines() == [
            "fetching 1 account...",
            "bastion-balance: kraken failed: AuthenticationError: EAPI:Invalid signature: the signature "
            "does not verify: check the API secret",
        ]
        assert WRONG_SECRET not in out + err and KRAKEN_TEST_KEY not in out + err
        assert "Traceback" not in err

    def test_partial_exit_1(self, kraken: LoopbackServer, tmp_path: Path) -> None:
        """One account answering and one not: exit 1, the summary names the failed one, the status
        says partial, the table has a 'failed' row."""
        config = write_config(
            tmp_path, kraken_account(kraken, label="up"), kraken_account(None, label="down")
        )
        code, out, err = run("--config", str(config), "--plain", "--timeout", "2")
        assert code == 1
        lines = out.splitlines()
        assert lines[-1] == "partial: 1 of 2 accounts counted, 1 with errors"
        assert lines[-2] == "$382.20 across 1 exchange, $375.17 available (98.2% free); 1 failed: down"
        assert [line.split()[:2] for line in lines[2:4]] == [["up", "kraken"], ["down", "kraken"]]
        assert "failed" in lines[3]
        assert "bastion-balance: down failed: TransportError" in err

    def test_a_euro_account_is_counted_with_a_rate(self, kraken: LoopbackServer, tmp_path: Path) -> None:
        """A Kraken account valued in EUR: without a rate it is not counted (exit 1, a hint on
        stderr); with --rate or [rates] it is, at exactly that rate."""
        config = write_config(tmp_path, kraken_account(kraken, asset="ZEUR"))
        code, out, err = run("--config", str(config), "--plain")
        assert code == 1
        assert "no rate" in out
        assert "kraken not counted: MissingRateError: no USD rate for EUR: pass --rate EUR=X" in err
        code, out, _ = run("--config", str(config), "--json", "--rate", "EUR=1.0842")
        assert code == 0
        assert json.loads(out, parse_float=Decimal)["total_usd"] == KRAKEN_TOTAL * Decimal("1.0842")
        config.write_text(config.read_text() + "[rates]\nEUR = 1.0842\n")
        code, out, _ = run("--config", str(config), "--plain")
        assert code == 0
        assert "rates: EUR 1.0842 (given)" in out and "414.38470944" in out

    def test_live_rates(
        self, kraken: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--live-rates (or [rates] source = "kraken") values the account from Kraken's ticker;
        --rate then replaces the config's source."""
        monkeypatch.setattr(cli, "_live_rates", lambda: bb.KrakenRates(base_url=kraken.url))
        config = write_config(tmp_path, kraken_account(kraken, asset="ZEUR"))
        code, out, _ = run("--config", str(config), "--json", "--live-rates")
        assert code == 0
        data = json.loads(out, parse_float=Decimal)
        assert data["rate_sources"]["EUR"]["source"] == "kraken"
        assert data["total_usd"] == KRAKEN_TOTAL * Decimal("1.08420")
        config.write_text(config.read_text() + '[rates]\nsource = "kraken"\n')
        code, out, _ = run("--config", str(config), "--plain")
        assert code == 0 and "rates: EUR 1.08420 (kraken ZEURZUSD last trade, " in out
        code, out, _ = run("--config", str(config), "--plain", "--rate", "EUR=2")
        assert code == 0 and "rates: EUR 2 (given)" in out

    def test_a_currency_the_source_does_not_quote(
        self, kraken: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(cli, "_live_rates", lambda: bb.KrakenRates(base_url=kraken.url))
        config = write_config(tmp_path, kraken_account(kraken, asset="ZJPY"))
        code, _, err = run("--config", str(config), "--plain", "--live-rates")
        assert code == 1
        assert "value it with --rate JPY=X instead of --live-rates" in err

    def test_secrets_are_masked_in_failure_lines(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Even an error that quotes a credential prints it masked."""
        config = write_config(tmp_path, kraken_account(None, api_secret=WRONG_SECRET, label="main"))

        def leaky(providers: object, **kwargs: object) -> bb.Portfolio:
            error = bb.AuthenticationError(f"main: the venue echoed {WRONG_SECRET}", venue="kraken")
            return bb.Portfolio(balances={}, errors={"main": error}, fetched_at=datetime.now(UTC))

        monkeypatch.setattr(cli._client, "aggregate", leaky)
        code, out, err = run("--config", str(config), "--json")
        assert code == 3
        assert "bastion-balance: main failed: AuthenticationError: the venue echoed ***" in err
        assert json.loads(out)["errors"]["main"]["message"] == "main: the venue echoed ***"
        assert WRONG_SECRET not in out + err

    def test_warnings_go_to_stderr(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A portfolio's warnings reach stderr, one line each; the table stays on stdout, and with
        --json the warnings are in the document too."""
        portfolio = bb.Portfolio(
            balances={}, warnings=("kraken: 2 holdings not counted",), fetched_at=datetime.now(UTC)
        )
        monkeypatch.setattr(cli, "_fetch_once", lambda *args: cli.Fetched(portfolio, 0))
        code, out, err = run("demo", "--plain")
        assert code == 0
        assert "bastion-balance: warning: kraken: 2 holdings not counted" in err
        assert "holdings" not in out and out.splitlines()[-1] == "0 accounts, complete"
        code, out, err = run("demo", "--json")
        assert code == 0
        assert "bastion-balance: warning: kraken: 2 holdings not counted" in err
        assert json.loads(out)["warnings"] == ["kraken: 2 holdings not counted"]


class TestVenues:
    def test_every_venue_its_settings_and_variables(self) -> None:
        code, out, err = run("venues")
        assert code == 0 and err == ""
        for name, venue in VENUES.items():
            assert f"\n{name}  {venue.title} (bb.{venue.class_name}, docs/{venue.docs})\n" in out
        assert "  api_key     required, secret  BASTION_KRAKEN_API_KEY" in out
        assert "  label       optional          BASTION_KRAKEN_LABEL" in out
        assert "configured: no" in out
        assert "from BASTION_* environment variables (there is no config file" in out

    def test_what_is_configured_in_the_environment(self, tmp_path: Path) -> None:
        environ = {
            "BASTION_KRAKEN_API_KEY": WRONG_SECRET,
            "BASTION_KRAKEN_API_SECRET_FILE": str(tmp_path / "s"),
            "BASTION_KRAKEN_LABEL": "main",
            "BASTION_BYBIT_API_KEY": WRONG_SECRET,
            "BASTION_BINANCE_APIKEY": WRONG_SECRET,
        }
        code, out, err = run("venues", environ=environ)
        assert code == 0
        blocks = {block.split()[0]: block for block in out.split("\n\n")[1:]}
        assert "configured: yes, from the environment (label main)" in blocks["kraken"]
        assert "configured: incomplete: set BASTION_BYBIT_API_SECRET" in blocks["bybit"]
        assert (
            "unknown variable BASTION_BINANCE_APIKEY is ignored (did you mean BASTION_BINANCE_API_KEY?)"
            in err
        )
        assert WRONG_SECRET not in out + err
        _, out, _ = run("venues", environ={"BASTION_RAILS_API_KEY": "x", "BASTION_RAILS_API_SECRET": "y"})
        assert "configured: yes, from the environment (label rails)" in out

    def test_what_is_configured_in_a_config_file(self, tmp_path: Path) -> None:
        """The config's accounts by label, without resolving a credential (an unset _env is fine)."""
        config = write_config(
            tmp_path,
            {"venue": "kraken", "label": "main", "api_key_env": "UNSET"},
            {"venue": "kraken", "label": "alt"},
            {"venue": "bybit"},
            extra="[[acount]]\n",
            mode=0o644,
        )
        code, out, err = run("venues", "--config", str(config), environ={"BASTION_KRAKEN_API_KEY": "x"})
        assert code == 0
        assert (
            f"Accounts are read from the config file {config} (the BASTION_* account variables set here are "
            "ignored: BASTION_KRAKEN_API_KEY)." in out
        )
        blocks = {block.split()[0]: block for block in out.split("\n\n")[1:]}
        assert "configured: yes, main, alt" in blocks["kraken"]
        assert "configured: yes, bybit" in blocks["bybit"]
        assert "configured: no" in blocks["rails"]
        assert "readable or writable by other users" in err and "unknown table 'acount'" in err
        config.chmod(0o600)
        config.write_text('[[account]]\nvenue = "rails"\n')
        _, out, err = run("venues", "--config", str(config))
        assert "set here are ignored" not in out and err == ""

    def test_a_broken_config_is_a_usage_error(self, tmp_path: Path) -> None:
        config = tmp_path / "c.toml"
        config.write_text("[[account")
        code, _, err = run("venues", "--config", str(config))
        assert code == 2 and "not valid TOML" in err


class TestEdges:
    def test_plain_fallback_without_rich(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without rich the command prints the plain table, on a terminal too, and no spinner."""
        monkeypatch.setitem(sys.modules, "rich", None)
        assert cli._rich_available() is False
        code, out, err = run("demo", out=FakeTTY(), err=FakeTTY())
        assert code == 0
        assert out.splitlines()[1].startswith("----") and "fetching 7 accounts..." in err

    def test_ctrl_c_during_the_fetch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Ctrl-C while fetching: exit 130 and one line, no traceback."""

        def interrupted(*args: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(cli, "_fetch_once", interrupted)
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

    def test_a_closed_pipe_is_141_without_a_traceback(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """`bastion-balance | head`: the reader left; exit 141, stdout pointed at /dev/null."""
        stdout = (tmp_path / "out").open("w")
        monkeypatch.setattr(sys, "stdout", stdout)

        def closed() -> int:
            raise BrokenPipeError

        monkeypatch.setattr(cli, "run", closed)
        with pytest.raises(SystemExit) as info:
            cli.main()
        assert info.value.code == 141
        assert os.path.samefile(f"/proc/self/fd/{stdout.fileno()}", os.devnull)
        stdout.close()

    def test_closed_pipe_in_a_real_process(self) -> None:
        """A real pipe closed after one line: no traceback on stderr."""
        command = f"{sys.executable} -m bastion_balance demo --plain | head -n 1"
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False, timeout=60)
        assert done.stdout.startswith("account")
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
