"""A person in a browser (headless Chromium via Playwright) creates a routine in the admin, watching
the preview of its next five fires in its zone as they type, then pauses it. Screenshots go to
test-output/."""

from __future__ import annotations

from tests.web.test_browser import PASSWORD, browser, expect, live_web, page, pytestmark, screenshots  # noqa: F401


def test_the_admin_creates_a_routine_with_the_preview_and_pauses_it(live_web, page, screenshots):  # noqa: F811
    page.goto(f"{live_web.url}/admin/login/?next=/admin/pulses/routine/add/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    page.fill("#id_name", "briefing")
    page.fill("#id_prompt", "Brief me on today")
    page.fill("#id_timezone", "Europe/Berlin")
    page.fill("#id_schedule", "61 * * * *")
    preview = page.locator("#routine-preview")
    expect(preview.locator(".reeve-preview-error")).to_contain_text(
        "schedule: '61 * * * *' is not a valid cron"
    )
    page.fill("#id_schedule", "0 8 * * 1-5")
    expect(preview.locator("li")).to_have_count(5)
    expect(preview.locator(".reeve-schedule-text")).to_have_text(
        "At 08:00 on Monday through Friday (Europe/Berlin)"
    )
    fires = preview.locator("li").all_inner_texts()
    assert all(
        " 08:00 CE" in fire and fire.split()[0] in ("Mon", "Tue", "Wed", "Thu", "Fri") for fire in fires
    )
    page.screenshot(path=str(screenshots / "admin-routine-preview.png"), full_page=True)

    page.click("input[name=_save]")
    row = page.locator("#result_list tbody tr", has_text="briefing")
    expect(row).to_contain_text("At 08:00 on Monday through Friday")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row).to_contain_text("never run")
    assert live_web.home.query(
        "SELECT schedule, timezone, enabled FROM pulse_routines WHERE name='briefing'"
    ) in (
        [("0 8 * * 1-5", "Europe/Berlin", 1)],
        [("0 8 * * 1-5", "Europe/Berlin", True)],
    )

    row.locator("input[name=_selected_action]").check()
    page.select_option("select[name=action]", "pause")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist")).to_contain_text("Paused 1 routine.")
    row = page.locator("#result_list tbody tr", has_text="briefing")
    expect(row.locator("td.field-next_fire")).to_have_text("paused")
    page.screenshot(path=str(screenshots / "admin-routine-paused.png"), full_page=True)
    [(enabled,)] = live_web.home.query("SELECT enabled FROM pulse_routines WHERE name='briefing'")
    assert not enabled
