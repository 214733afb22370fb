"""A person in a browser (headless Chromium via Playwright): the admin's requeue action and the dashboard.

Screenshots go to test-output/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.api.test_api_live import LiveReeve
from tests.support.reeve_processes import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-test-password-1"
SEED = """
from datetime import timedelta
from django.utils import timezone
from tests.support.factories import PulseAttemptFactory, PulseFactory
failed = PulseFactory(failed=True, prompt="Summarise the inbox (browser test)", error_message="agent said no")
PulseAttemptFactory(pulse=failed, succeeded=False, exit_code=1, duration_ms=8000)
now = timezone.now()
for hours, ms in ((0, 4000), (1, 12000), (1, 6000), (3, 30000), (7, 9000), (12, 2000)):
    PulseAttemptFactory(finished_at=now - timedelta(hours=hours), duration_ms=ms)
for priority, count in (("critical", 1), ("high", 3), ("normal", 5), ("low", 2)):
    PulseFactory.create_batch(count, priority=priority)
print(failed.pk)
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture
def live_web(reeve_home):
    reeve_home.extra_env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
    reeve_home.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    live = LiveReeve(reeve_home)
    # The web process only: with a worker running, the requeued pulse would run before we look.
    live.start(web_only=True)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module's tests (it costs seconds to start); each test has its own context."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page in a context of its own: no cookie or storage of another test's."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def screenshots():
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    return out


def log_in(page, live_web, *, then: str) -> None:
    """Sign in to the admin as the test's superuser, landing on the path `then`."""
    page.goto(f"{live_web.url}/admin/login/?next={then}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_admin_requeues_a_failed_pulse_and_the_dashboard_shows_charts_and_queue_depth(
    live_web, page, screenshots
):
    failed_id = live_web.home.manage("shell", "-c", SEED).stdout.strip().splitlines()[-1]

    log_in(page, live_web, then="/admin/pulses/pulse/%3Fstatus__exact%3Dfailed")
    row = page.locator("#result_list tbody tr", has_text="Summarise the inbox")
    expect(row.locator(".reeve-pill", has_text="failed")).to_have_count(1)
    page.screenshot(path=str(screenshots / "admin-failed-pulse.png"), full_page=True)

    row.locator("input[name=_selected_action]").check()
    page.select_option("select[name=action]", "requeue")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist")).to_contain_text("Requeued 1 pulse.")

    page.goto(f"{live_web.url}/admin/pulses/pulse/?q=Summarise")
    row = page.locator("#result_list tbody tr", has_text="Summarise the inbox")
    expect(row.locator(".reeve-pill", has_text="pending")).to_have_count(1)
    page.screenshot(path=str(screenshots / "admin-requeued-pending.png"), full_page=True)
    assert live_web.home.query("SELECT status FROM pulses WHERE id=?", (int(failed_id),)) == [("pending",)]

    page.goto(f"{live_web.url}/dashboard/")
    expect(page.locator("#chart-queue-depth rect")).to_have_count(5)
    assert page.locator("#chart-per-hour rect").count() >= 24
    assert page.locator("#chart-queue-depth rect").count() == 5
    # 11 seeded pending pulses plus the one just requeued.
    assert page.locator("#queue-depth").inner_text() == "12"
    assert page.locator("#chart-queue-depth [data-priority=high]").text_content() == "3"
    assert "Summarise the inbox" not in page.locator("#failures").inner_text()
    page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)

    page.goto(f"{live_web.url}/api/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    page.screenshot(path=str(screenshots / "api-docs.png"))


def test_the_browser_test_knows_where_chromium_lives():
    assert shutil.which("chromium") or CHROMIUM.exists()


ANSWERED = """
from tests.support.factories import PulseAttemptFactory, PulseFactory
pulse = PulseFactory(completed=True, prompt="What is on my calendar today? (browser test)")
PulseAttemptFactory(pulse=pulse, result_text="Dentist at 9:00, then lunch with Ada.\\nNothing else today.")
long = PulseFactory(
    completed=True,
    source="telegram",
    prompt="Telegram message from Ada Lovelace: summarise the three newest mails about the conference "
    "and say which of them need an answer from me before Friday",
)
PulseAttemptFactory(
    pulse=long,
    result_text="Two of the three need you: the programme committee wants your slides by Thursday noon, "
    "and the venue asks whether you need a projector; the third is a newsletter.",
)
print(pulse.pk)
"""


def test_the_agents_answer_shows_in_the_admin_list_and_page_and_on_the_dashboard(live_web, page, screenshots):
    pulse_id = live_web.home.manage("shell", "-c", ANSWERED).stdout.strip().splitlines()[-1]

    log_in(page, live_web, then="/admin/pulses/pulse/")
    row = page.locator("#result_list tbody tr", has_text="What is on my calendar")
    expect(row.locator("td.field-short_answer")).to_have_text("Dentist at 9:00, then lunch with Ada.")
    page.screenshot(path=str(screenshots / "admin-answer-column.png"), full_page=True)
    # Readable at 1280 px (the page's viewport): the whole table fits without scrolling sideways, and
    # the answer column is not squeezed to a few words a line.
    assert page.viewport_size["width"] == 1280
    page.screenshot(path=str(screenshots / "admin-pulse-list-1280.png"))
    results = page.locator("#changelist .results")
    assert results.evaluate("el => el.scrollWidth <= el.clientWidth")
    answer = page.locator("#result_list tbody tr", has_text="Telegram message from Ada").locator(
        "td.field-short_answer"
    )
    box = answer.bounding_box()
    assert box["width"] >= 200 and box["x"] + box["width"] <= 1280

    page.goto(f"{live_web.url}/admin/pulses/pulse/{pulse_id}/change/")
    expect(page.locator(".field-answer")).to_contain_text("Nothing else today.")
    expect(page.locator("td.field-result_text")).to_contain_text("Dentist at 9:00")
    page.screenshot(path=str(screenshots / "admin-answer-page.png"), full_page=True)

    page.goto(f"{live_web.url}/dashboard/")
    runs = page.locator("#runs")
    expect(runs).to_contain_text("Dentist at 9:00, then lunch with Ada.")
    assert "Nothing else today." not in runs.inner_text()  # the first line only
    page.screenshot(path=str(screenshots / "dashboard-answers.png"), full_page=True)


@pytest.fixture
def live_worker(reeve_home):
    """The web process and a worker (run_reeve), for a run to watch."""
    reeve_home.extra_env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
    reeve_home.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    live = LiveReeve(reeve_home)
    live.start()
    yield live
    live.stop()


def test_the_pulse_page_and_the_dashboard_show_the_runs_tool_calls_while_the_agent_works(
    live_worker, page, screenshots
):
    log_in(page, live_worker, then="/admin/")
    expect(page.locator("#site-name")).to_be_visible()
    status, body = live_worker.request(
        "POST", "/api/pulse/trigger", {"prompt": "Tidy the notes mode=tool_calls:16"}
    )
    assert status == 201, body
    pulse_id = body["id"]

    page.goto(f"{live_worker.url}/admin/pulses/pulse/{pulse_id}/change/")
    tail = page.locator(".field-live_tail .reeve-tail-events li.reeve-tail-tool")
    expect(tail.first).to_contain_text("Bash: echo step 1", timeout=30_000)
    expect(tail.nth(1)).to_contain_text("Bash: echo step 2")
    # Seen while it runs: the pulse is still processing, and the page did not reload.
    assert live_worker.home.query("SELECT status FROM pulses WHERE id=?", (pulse_id,)) == [("processing",)]
    expect(page.locator(".field-live_tail .reeve-tail-state")).to_contain_text("Running")
    page.screenshot(path=str(screenshots / "run-tail.png"), full_page=True)

    dashboard = page.context.new_page()
    dashboard.goto(f"{live_worker.url}/dashboard/")
    expect(dashboard.locator(f"#running [data-pulse='{pulse_id}'] li.reeve-tail-tool").first).to_contain_text(
        "Bash: echo step 1"
    )
    dashboard.screenshot(path=str(screenshots / "dashboard-run-tail.png"), full_page=True)

    state = page.locator(".field-live_tail .reeve-tail-state")
    expect(state).to_contain_text("The pulse has ended: completed: Ran 16 steps.", timeout=30_000)
    assert tail.count() == 16
