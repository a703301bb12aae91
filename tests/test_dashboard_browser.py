"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, driven
by selenium) on a real three-node swarm: log in, see the nodes and the leader, watch an
adoption appear without a reload, open its diff, abort a rollout.  A screenshot of each
step is saved under ``$TARS_ARTIFACTS`` (or the test's tmp folder), printed at the start.
Without a Chromium that starts, the test skips saying why (CI installs it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashkit import Swarm, swarm_with_dashboard
from swarmkit import wait as _wait


def wait(predicate: Any, timeout: float = 60.0, what: str = "") -> None:
    """:func:`swarmkit.wait`, where an element the live stream replaced between finding it
    and reading it (selenium's StaleElementReferenceException) counts as "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException

    def fresh() -> Any:
        try:
            return predicate()
        except StaleElementReferenceException:
            return False

    _wait(fresh, timeout, what)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.skip(f"selenium is not installed ({exc}): pip install -e .[test]")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no chromium/chromedriver: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1100", f"--user-data-dir={tmp_path / 'chromium'}"):  # fmt: skip
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    except Exception as exc:  # noqa: BLE001 (any failure to start is a reason to skip)
        print(f"chromium did not start: {exc}")
        pytest.skip(f"chromium did not start: {str(exc).splitlines()[0]}")
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TARS_ARTIFACTS") or tmp_path) / "dashboard-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


def test_a_person_logs_in_watches_an_adoption_opens_its_diff_and_aborts_a_rollout(
    tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    shots = _artifacts(tmp_path)
    with swarm_with_dashboard(tmp_path / "swarm") as swarm:
        _log_in(browser, swarm, shots)
        leader = _wait_leader(swarm)
        wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#swarm tr.node")) == 3, 30, "three nodes")  # fmt: skip
        rows = browser.find_elements(By.CSS_SELECTOR, "#swarm tr.role-leader")
        assert [r.get_attribute("data-node") for r in rows] == [leader]
        browser.save_screenshot(str(shots / "2-swarm.png"))

        browser.execute_script("window.notReloaded = 'yes'")
        version = swarm.adopt("seen live")

        def shown() -> bool:
            cells = browser.find_elements(By.CSS_SELECTOR, '[data-head="svc"]')
            rows = browser.find_elements(By.CSS_SELECTOR, "#events tr[data-type=VersionAdopted]")
            return bool(cells) and cells[0].text == version[:12] and any(version[:12] in r.text for r in rows)  # fmt: skip

        wait(shown, 30, "the adoption on the page without a reload")
        wait(lambda: _node_heads(browser, "svc") == [version[:12]] * 3, 30, "every node's head")
        assert browser.execute_script("return window.notReloaded") == "yes"
        browser.save_screenshot(str(shots / "3-adoption-live.png"))

        link = browser.find_element(By.CSS_SELECTOR, f'#events a.ver[href$="/version/{version}"]')
        link.click()
        wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#diff .add"), 30, "the diff")
        added = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#diff .add")]
        assert "+# seen live" in added, added
        browser.save_screenshot(str(shots / "4-diff.png"))

        _abort(browser, swarm, version, shots)
        _refusals(browser, swarm, shots)


def _log_in(browser: Any, swarm: Swarm, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(swarm.server.url)
    assert browser.current_url.endswith("/dashboard/login")  # no page without a login
    browser.find_element(By.ID, "secret").send_keys("not the secret")
    browser.find_element(By.ID, "login").click()
    wait(lambda: browser.find_elements(By.ID, "login-failed"), 30, "the login refused")
    browser.save_screenshot(str(shots / "0-login-refused.png"))
    browser.find_element(By.ID, "secret").send_keys(swarm.config.keypair("admin")[1])
    browser.save_screenshot(str(shots / "1-login.png"))
    browser.find_element(By.ID, "login").click()
    wait(lambda: browser.find_elements(By.ID, "swarm"), 30, "the swarm page")
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["tars_session"]["httpOnly"] and cookies["tars_session"]["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: scripts see none
    wait(lambda: browser.find_element(By.ID, "live-state").text == "live", 30, "the live stream")


def _wait_leader(swarm: Swarm) -> str:
    found: list[str] = []

    def one() -> bool:
        leaders = [n.id for n in swarm.nodes if n.status()["role"] == "leader"]
        found[:] = leaders
        return len(leaders) == 1

    wait(one, 30, "one leader")
    return found[0]


def _abort(browser: Any, swarm: Swarm, version: str, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    def running() -> bool:
        boards = [n.live.deployments.board.get("svc") or {} for n in swarm.nodes]
        return all(b.get("version") == version and b.get("phase") == "stepping" for b in boards)

    wait(running, 90, "every node rolling the new version out")
    browser.get(swarm.server.url.rstrip("/") + "/genome/svc")
    wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#rollouts-svc .rollout")) == 3, 30, "rollouts shown")  # fmt: skip
    browser.save_screenshot(str(shots / "5-rollout.png"))
    browser.find_element(By.ID, "abort-svc").click()
    wait(lambda: any("200" in e.text for e in browser.find_elements(By.ID, "action-result")), 60, "the abort answered")  # fmt: skip
    wait(lambda: all((n.live.deployments.board.get("svc") or {}).get("phase") == "aborted"
                     for n in swarm.nodes), 60, "every node aborted")  # fmt: skip
    browser.save_screenshot(str(shots / "6-aborted.png"))
    browser.refresh()
    phases = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#rollouts-svc .rollout h4")]
    assert len(phases) == 3 and all("aborted" in p for p in phases), phases
    browser.save_screenshot(str(shots / "7-aborted-reloaded.png"))


_FETCH = """
const done = arguments[arguments.length - 1];
fetch(arguments[0], {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": arguments[1]},
                     body: new URLSearchParams({genome: "svc", order: "pause"})})
  .then(r => done(r.status)).catch(e => done(String(e)));
"""


def _refusals(browser: Any, swarm: Swarm, shots: Path) -> None:
    """From the browser: a forged CSRF token, a viewer's action, and no login are refused."""
    from selenium.webdriver.common.by import By

    from runtime.access_tokens import make_token

    api = swarm.server.url.rstrip("/") + "/api/rollout"
    assert browser.execute_async_script(_FETCH, api, "forged") == 403
    browser.find_element(By.CSS_SELECTOR, "nav form button").click()  # log out
    wait(lambda: browser.current_url.endswith("/dashboard/login"), 30, "logged out")
    browser.get(swarm.server.url.rstrip("/") + "/genome/svc")
    assert browser.current_url.endswith("/dashboard/login")  # the session is gone
    browser.find_element(By.ID, "secret").send_keys(make_token(swarm.config, "eve", role="viewer"))
    browser.find_element(By.ID, "login").click()
    wait(lambda: browser.find_elements(By.ID, "swarm"), 30, "the viewer's swarm page")
    browser.get(swarm.server.url.rstrip("/") + "/genome/svc")
    assert not browser.find_elements(By.ID, "abort-svc")  # no button a viewer may not use
    csrf = browser.find_element(By.CSS_SELECTOR, 'meta[name="csrf"]').get_attribute("content")
    assert browser.execute_async_script(_FETCH, api, csrf) == 403  # a viewer may not
    browser.save_screenshot(str(shots / "8-viewer.png"))


_HELD = """
const done = arguments[arguments.length - 1];
const csrf = document.querySelector('meta[name="csrf"]').content;
fetch(arguments[0], {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf},
                     body: new URLSearchParams({genome: "svc", candidate: arguments[1], decision: "approve"})})
  .then(r => r.json().then(j => done([r.status, j.error || ""]))).catch(e => done(String(e)));
"""


def test_an_approver_approves_a_held_candidate_and_every_node_adopts_it_live(
    tmp_path: Path, browser: Any
) -> None:
    """The admin login signs with the admin's approver key, which this dashboard holds
    (`--approver admin`); an operator's login is refused and the head stays."""
    from selenium.webdriver.common.by import By

    from runtime.access_tokens import make_token

    shots = _artifacts(tmp_path)
    with swarm_with_dashboard(tmp_path / "swarm") as swarm:
        genome_page = swarm.server.url.rstrip("/") + "/genome/svc"
        before = swarm.nodes[0].store.head("svc").version
        candidate = swarm.hold("approve me")
        # an operator may steer rollouts, not decide: no button, and the server refuses
        browser.get(swarm.server.url)
        browser.find_element(By.ID, "secret").send_keys(make_token(swarm.config, "olga", role="operator"))  # fmt: skip
        browser.find_element(By.ID, "login").click()
        wait(lambda: browser.find_elements(By.ID, "swarm"), 30, "the operator's swarm page")
        browser.get(genome_page)
        wait(lambda: browser.find_elements(By.CSS_SELECTOR, f'.held[data-candidate="{candidate}"]'), 30, "the held candidate")  # fmt: skip
        assert not browser.find_elements(By.ID, f"approve-{candidate}")
        status, error = browser.execute_async_script(_HELD, swarm.server.url.rstrip("/") + "/api/held", candidate)  # fmt: skip
        assert status == 403 and "may not approve" in error, (status, error)
        browser.save_screenshot(str(shots / "held-0-operator-refused.png"))
        assert {n.store.head("svc").version for n in swarm.nodes} == {before}
        assert all(candidate in n.store.head("svc").pending for n in swarm.nodes)
        browser.find_element(By.CSS_SELECTOR, "nav form button").click()  # log out
        wait(lambda: browser.current_url.endswith("/dashboard/login"), 30, "logged out")

        browser.find_element(By.ID, "secret").send_keys(swarm.config.keypair("admin")[1])
        browser.find_element(By.ID, "login").click()
        wait(lambda: browser.find_elements(By.ID, "swarm"), 30, "the admin's swarm page")
        browser.get(genome_page)
        wait(
            lambda: browser.find_element(By.ID, "live-state").text == "live", 30, "the live stream"
        )
        browser.save_screenshot(str(shots / "held-1-waiting.png"))
        browser.execute_script("window.notReloaded = 'yes'")
        browser.find_element(By.ID, f"approve-{candidate}").click()
        wait(lambda: any("200" in e.text for e in browser.find_elements(By.ID, "action-result")), 60, "the approval answered")  # fmt: skip
        wait(lambda: {n.store.head("svc").version for n in swarm.nodes} == {candidate}, 60, "adopted on every node")  # fmt: skip
        cell = browser.find_element(By.CSS_SELECTOR, '[data-head="svc"]')
        wait(lambda: cell.text == candidate[:12], 30, "the new head on the page without a reload")
        assert browser.execute_script("return window.notReloaded") == "yes"
        assert '"adopted":true' in browser.find_element(By.ID, "action-result").text
        said = browser.find_element(
            By.CSS_SELECTOR, f'.held[data-candidate="{candidate}"] .decided'
        )
        assert said.text == "approved by admin (1 of 1): adopted", said.text
        assert not browser.find_elements(By.ID, f"approve-{candidate}")  # decided: no buttons left
        browser.save_screenshot(str(shots / "held-2-adopted-live.png"))
        adopted = swarm.nodes[1].store.head("svc")
        assert candidate not in adopted.pending


def _node_heads(browser: Any, genome: str) -> list[str] | None:
    """The swarm table's head cell of every node, None while the live stream replaces one."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    cells = browser.find_elements(By.CSS_SELECTOR, f'#swarm [data-node-head="{genome}"]')
    try:
        return [e.text for e in cells]
    except StaleElementReferenceException:
        return None


# slow (22 s: a real evolution until an adoption): by default an adoption's row streams in
# and every node's head cell follows, with no reload, in
# test_a_person_logs_in_watches_an_adoption_...; the swarm's own evolution and votes
# adopting on every node are test_swarm.py's
@pytest.mark.slow
def test_an_evolving_swarms_adoption_appears_without_a_reload(tmp_path: Path, browser: Any) -> None:
    """No adoption proposed by hand: three nodes evolve tiny (the leader's cycles, the peers'
    votes) while a page is open; the adoption's row streams in and every node's head cell
    follows, with no reload."""
    from selenium.webdriver.common.by import By
    from swarmkit import TINY

    from cli.demo import write_cluster
    from node import SwarmNode
    from runtime.config import load_cluster
    from runtime.dashboard import DashboardServer, for_swarm

    shots = _artifacts(tmp_path)
    config = load_cluster(write_cluster(tmp_path / "swarm", 3, TINY, 3, 3, 3, 1))
    config.ensure_keys()
    nodes = [SwarmNode(config, node_id) for node_id in config.ids]
    server = DashboardServer(for_swarm(config, poll=0.05))
    try:
        for node in nodes:
            node.start()
        server.start()
        browser.get(server.url)
        browser.find_element(By.ID, "secret").send_keys(config.keypair("admin")[1])
        browser.find_element(By.ID, "login").click()
        wait(lambda: browser.find_elements(By.ID, "swarm"), 30, "the swarm page")
        wait(
            lambda: browser.find_element(By.ID, "live-state").text == "live", 30, "the live stream"
        )
        browser.execute_script("window.notReloaded = 'yes'")
        adopted = '#events tr.flash[data-type="VersionAdopted"]'  # .flash: inserted live
        wait(lambda: browser.find_elements(By.CSS_SELECTOR, adopted), 180, "an adoption, live")
        browser.save_screenshot(str(shots / "evolving-1-adoption-live.png"))
        row = browser.find_element(By.CSS_SELECTOR, adopted).text
        assert browser.execute_script("return window.notReloaded") == "yes"
        log = nodes[0].store.log(genome="tiny")
        versions = {str(e.data.get("version")) for e in log if e.type == "VersionAdopted"}
        assert any(v[:12] in row for v in versions), (row, versions)

        def every_head_shown() -> bool:
            from selenium.common.exceptions import StaleElementReferenceException

            cells = browser.find_elements(By.CSS_SELECTOR, '#swarm [data-node-head="tiny"]')
            try:  # the live stream may replace a cell between finding it and reading it
                shown = {e.text for e in cells}
            except StaleElementReferenceException:
                return False
            return shown == {nodes[0].store.head("tiny").version[:12]} and len(cells) == 3

        wait(every_head_shown, 60, "every node's new head in the swarm table")
        assert browser.execute_script("return window.notReloaded") == "yes"
        browser.save_screenshot(str(shots / "evolving-2-heads.png"))
    finally:
        server.stop()
        for node in nodes:
            node.stop()
