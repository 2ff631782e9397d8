"""Real SIGINTs at random moments of sync fetches (in a child process): no file descriptor leaks,
no turn stays held, and nothing but KeyboardInterrupt or the library's own errors escapes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, os, random, signal, threading, time
    import bastion_balance as bb
    from bastion_balance import _state
    from bastion_balance.testing import KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET, SimulatedKraken, Simulator
    from bastion_balance.testing import rate_limits_disabled
    from bastion_balance.testing._loopback import Fault, LoopbackServer
    import bastion_balance._client as client_module

    client_module.ABANDON_GRACE = 0.05
    INTERRUPTS = int(os.environ["INTERRUPTS"])

    def fds():
        return len(os.listdir("/proc/self/fd"))

    escaped, done, interrupted = {}, 0, 0
    with rate_limits_disabled(), LoopbackServer(Simulator(SimulatedKraken(host="127.0.0.1"))) as server:
        kraken = bb.Kraken(api_key=KRAKEN_TEST_KEY, api_secret=KRAKEN_TEST_SECRET, base_url=server.url)
        client = bb.BalanceClient()
        client.fetch(kraken)
        baseline = fds()
        main = threading.main_thread().ident
        rng = random.Random(3)
        stop = threading.Event()

        def fire():
            while not stop.is_set():
                # mostly within a fetch's few milliseconds; now and then a pause long enough for
                # whole fetches to finish even on a loaded machine (the test needs both kinds)
                time.sleep(rng.uniform(0.0005, 0.03) if rng.random() > 0.05 else 0.3)
                signal.pthread_kill(main, signal.SIGINT)

        shooter = threading.Thread(target=fire, daemon=True)
        shooter.start()
        while interrupted < INTERRUPTS:
            try:
                try:
                    server.script(Fault.delay(rng.uniform(0, 0.002)))
                    client.fetch(kraken, timeout=5)
                    done += 1
                except KeyboardInterrupt:
                    interrupted += 1
                except bb.BastionBalanceError as exc:
                    escaped.setdefault(type(exc).__name__, 0)
                    escaped[type(exc).__name__] += 1
                except Exception as exc:  # what must never happen
                    escaped.setdefault("OTHER " + type(exc).__name__, 0)
                    escaped["OTHER " + type(exc).__name__] += 1
            except KeyboardInterrupt:
                interrupted += 1
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        shooter.join()
        time.sleep(0.3)  # abandoned requests' grace
        state = _state.shared_state("kraken", server.url, KRAKEN_TEST_KEY)
        held = state.inflight.locked()
        ok = client.fetch(kraken, timeout=5).total
        client.close()
        after = fds()
    print(json.dumps({"done": done, "interrupted": interrupted, "escaped": escaped, "held": held,
                      "baseline": baseline, "after": after, "total": str(ok)}))
    """
)


def test_random_interrupts_leak_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={"INTERRUPTS": "300", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["interrupted"] == 300 and report["done"] > 0  # interrupts land at every stage
    assert not any(name.startswith("OTHER") for name in report["escaped"]), report
    assert report["held"] is False
    assert report["total"] == "382.2032"
    assert report["after"] <= report["baseline"] + 2, report  # no pooled connection leaked
