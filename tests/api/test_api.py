"""The REST API (SPEC §5): every endpoint and every error path, through Django's test client."""

import json
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from pulses import answers
from pulses.api import tokens
from pulses.models import Delivery, Pulse, Status, TokenScope
from tests.support.factories import PulseAttemptFactory, PulseFactory, report_worker_alive

TOKEN = "your_token_here"
GUIDE_PAYLOAD = """{
    "prompt": "Test pulse from curl",
    "scheduled_at": "now",
    "priority": "normal",
    "source": "manual_test"
  }"""

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.PULSE_API_TOKEN = TOKEN
    return TOKEN


def post(client, path, body=None, token=TOKEN, content_type="application/json"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    return client.post(path, data=data or "", content_type=content_type, **headers)


def get(client, path, token=TOKEN):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(path, **headers)


def test_the_guides_exact_curl_payload_creates_a_normal_pulse_due_now(client):
    before = timezone.now()
    response = post(client, "/api/pulse/trigger", GUIDE_PAYLOAD)
    assert response.status_code == 201
    body = response.json()
    pulse = Pulse.objects.get(pk=body["id"])
    assert body["pulse_id"] == pulse.pk
    assert (pulse.prompt, pulse.priority, pulse.source, pulse.status) == (
        "Test pulse from curl",
        "normal",
        "manual_test",
        "pending",
    )
    assert before <= pulse.scheduled_at <= timezone.now()


def test_the_schedule_alias_creates_pulses_like_trigger(client):
    response = post(client, "/api/pulse/schedule", {"prompt": "from the original client"})
    assert response.status_code == 201
    assert Pulse.objects.get(pk=response.json()["id"]).prompt == "from the original client"


def test_trigger_defaults_to_the_guides_normal_priority_now_from_the_api_with_three_retries(client):
    body = post(client, "/api/pulse/trigger", {"prompt": "defaults"}).json()
    assert (body["priority"], body["source"], body["max_retries"], body["status"]) == (
        "normal",
        "api",
        3,
        "pending",
    )
    assert body["is_overdue"] is True


def test_trigger_stores_every_optional_field(client):
    body = post(
        client,
        "/api/pulse/trigger",
        {
            "prompt": "all fields",
            "scheduled_at": "2031-05-01T09:30:00+02:00",
            "priority": "critical",
            "source": "telegram",
            "session_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "sticky_notes": ["bring umbrella"],
            "tags": ["telegram", "user_message"],
            "max_retries": 0,
            "idempotency_key": "update-42",
        },
    ).json()
    pulse = Pulse.objects.get(pk=body["id"])
    assert pulse.scheduled_at == timezone.datetime(2031, 5, 1, 7, 30, tzinfo=ZoneInfo("UTC"))
    assert (pulse.session_id, pulse.sticky_notes, pulse.tags, pulse.max_retries, pulse.idempotency_key) == (
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        ["bring umbrella"],
        ["telegram", "user_message"],
        0,
        "update-42",
    )


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("in 5 minutes", lambda t, now: timedelta(minutes=4) < t - now < timedelta(minutes=6)),
        (
            "in 2 hours",
            lambda t, now: timedelta(hours=1, minutes=59) < t - now < timedelta(hours=2, minutes=1),
        ),
        ("in 3 days", lambda t, now: timedelta(days=2, hours=23) < t - now < timedelta(days=3, hours=1)),
        (
            "tomorrow at 9am",
            lambda t, now: (t.date() - now.date()).days == 1 and (t.hour, t.minute) == (9, 0),
        ),
        ("tonight", lambda t, now: t.hour >= 18),
        ("tonight at 9", lambda t, now: (t.date(), t.hour, t.minute) == (now.date(), 21, 0)),
        ("in half an hour", lambda t, now: timedelta(minutes=29) < t - now < timedelta(minutes=31)),
        ("next monday 8:00", lambda t, now: t.weekday() == 0 and t.hour == 8 and t > now),
        ("2031-01-31T09:00:00", lambda t, now: (t.year, t.hour) == (2031, 9)),
    ],
)
def test_scheduled_at_reads_relative_times_phrases_and_naive_iso_in_the_time_zone(
    client, settings, text, check
):
    settings.TIME_ZONE = "Europe/Berlin"
    response = post(client, "/api/pulse/trigger", {"prompt": "when", "scheduled_at": text})
    assert response.status_code == 201, response.json()
    zone = ZoneInfo("Europe/Berlin")
    scheduled = Pulse.objects.get(pk=response.json()["id"]).scheduled_at.astimezone(zone)
    assert check(scheduled, timezone.now().astimezone(zone)), scheduled


def test_an_unreadable_time_is_a_400_that_quotes_it_and_lists_the_accepted_forms(client):
    response = post(client, "/api/pulse/trigger", {"prompt": "x", "scheduled_at": "when pigs fly"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "'when pigs fly'" in detail
    assert "in N minutes" in detail and "tomorrow at 9am" in detail
    assert not Pulse.objects.exists()


def test_a_repeated_idempotency_key_returns_the_first_pulse_with_200(client):
    first = post(client, "/api/pulse/trigger", {"prompt": "once", "idempotency_key": "k-1"})
    second = post(client, "/api/pulse/trigger", {"prompt": "twice?", "idempotency_key": "k-1"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["prompt"] == "once"
    assert Pulse.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        ('{"prompt": "unterminated', "application/json", 400, "not valid JSON"),
        ("[1, 2]", "application/json", 400, "Expected a dictionary"),
        ('"just a string"', "application/json", 400, "Expected a dictionary"),
        ("{}", "application/json", 400, "prompt: This field is required"),
        ('{"prompt": 12}', "application/json", 400, "prompt: must be a string"),
        ('{"prompt": "   "}', "application/json", 400, "prompt: This field may not be blank"),
        (
            '{"prompt": "x", "priority": "urgent"}',
            "application/json",
            400,
            '"urgent" is not one of: critical',
        ),
        ('{"prompt": "x", "priority": 1}', "application/json", 400, "priority"),
        ('{"prompt": "x", "tags": "solo"}', "application/json", 400, "tags: Expected a list"),
        ('{"prompt": "x", "tags": [1]}', "application/json", 400, "tags: 0: must be a string"),
        ('{"prompt": "x", "max_retries": "3"}', "application/json", 400, "max_retries"),
        ('{"prompt": "x", "max_retries": true}', "application/json", 400, "max_retries"),
        ('{"prompt": "x", "max_retries": -1}', "application/json", 400, "max_retries"),
        ('{"prompt": "x", "max_retries": 1e300}', "application/json", 400, "max_retries"),
        ('{"prompt": "x", "scheduled_at": 5}', "application/json", 400, "scheduled_at: must be a string"),
        ('{"prompt": "x", "scheduled_at": "2026-02-30T10:00:00"}', "application/json", 400, "scheduled_at"),
        ('{"prompt": "x", "scheduled_at": "in 99999999999 days"}', "application/json", 400, "too far away"),
        ('{"prompt": "x", "scheduled_at": "-1"}', "application/json", 400, "a bare number is not a time"),
        ('{"prompt": "x", "scheduled_at": "5"}', "application/json", 400, "in N minutes"),
        (
            '{"prompt": "x", "scheduled_at": "march"}',
            "application/json",
            400,
            "a month or a year without its day",
        ),
        ('{"prompt": "\\ud800"}', "application/json", 400, "valid Unicode"),
        ('{"prompt": "a\\u0000b"}', "application/json", 400, "Null characters are not allowed"),
        ('{"prompt": NaN}', "application/json", 400, "not valid JSON"),
        ("[" * 50_000, "application/json", 400, "nested too deeply"),
        (b"\xff\xfe{}", "application/json", 400, "not UTF-8"),
        ("prompt=x", "application/x-www-form-urlencoded", 415, "Unsupported media type"),
    ],
)
def test_every_bad_input_is_a_4xx_with_a_json_message_saying_what_to_fix(
    client, body, content_type, status, fragment
):
    response = post(client, "/api/pulse/trigger", body, content_type=content_type)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert fragment in response.json()["detail"]
    assert not Pulse.objects.exists()


def test_a_huge_prompt_is_a_400_and_a_huge_body_a_413(client):
    response = post(client, "/api/pulse/trigger", {"prompt": "x" * 50_001})
    assert response.status_code == 400
    assert "prompt: Ensure this field has no more than 50000 characters" in response.json()["detail"]
    for size in (2_200_000, 3_000_000):  # past our parser's limit, and past Django's own
        response = post(client, "/api/pulse/trigger", {"prompt": "x" * size})
        assert response.status_code == 413
        assert "larger than" in response.json()["detail"]


def test_a_request_without_a_token_is_401_with_a_json_detail_naming_the_fix(client):
    response = post(client, "/api/pulse/trigger", GUIDE_PAYLOAD, token=None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "PULSE_API_TOKEN" in response.json()["detail"]


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer", "Bearer a b", "Bearer " + "x" * 600])
def test_a_wrong_or_malformed_bearer_token_is_401(client, header):
    response = client.get("/api/pulses", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert "detail" in response.json()


def test_no_token_works_when_none_is_configured(client, settings):
    settings.PULSE_API_TOKEN = ""
    assert get(client, "/api/pulses", token="").status_code == 401
    assert get(client, "/api/pulses", token="anything").status_code == 401


def test_health_needs_no_token_and_reports_the_database(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("healthy", "ok")


def test_list_filters_by_status_overdue_priority_source_and_tag_and_paginates(client):
    due = PulseFactory(due=True, priority="critical", source="telegram", tags=["telegram", "user_message"])
    later = PulseFactory(priority="low", source="cron", tags=["heartbeat"])
    failed = PulseFactory(failed=True, source="cron")

    def ids(query):
        response = get(client, f"/api/pulses{query}")
        assert response.status_code == 200, response.json()
        return [p["id"] for p in response.json()["results"]]

    assert ids("") == [failed.pk, later.pk, due.pk]
    assert ids("?status=pending") == [due.pk, later.pk]
    assert ids("?status=overdue") == [due.pk]
    assert ids("?status=failed") == [failed.pk]
    assert ids("?priority=low") == [later.pk]
    assert ids("?source=cron") == [failed.pk, later.pk]
    assert ids("?tag=telegram") == [due.pk]
    assert ids("?tag=tele") == []
    page = get(client, "/api/pulses?limit=1&offset=1").json()
    assert (page["count"], page["limit"], page["offset"], [p["id"] for p in page["results"]]) == (
        3,
        1,
        1,
        [later.pk],
    )


@pytest.mark.parametrize(
    "query", ["?status=lost", "?priority=urgent", "?limit=0", "?limit=abc", "?offset=-1"]
)
def test_a_bad_list_filter_is_a_400(client, query):
    response = get(client, f"/api/pulses{query}")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("invalid input")


def test_one_pulse_comes_with_its_attempts(client):
    attempt = PulseAttemptFactory(number=1, session_id="s-9", error="")
    body = get(client, f"/api/pulses/{attempt.pulse_id}").json()
    assert body["id"] == attempt.pulse_id
    assert [(a["number"], a["session_id"], a["succeeded"]) for a in body["attempt_history"]] == [
        (1, "s-9", True)
    ]


def test_one_pulse_carries_the_agents_answer_from_its_last_successful_attempt(client):
    pulse = PulseFactory()
    assert get(client, f"/api/pulses/{pulse.pk}").json()["answer"] == ""
    PulseAttemptFactory(pulse=pulse, number=1, succeeded=True, result_text="first answer")
    PulseAttemptFactory(pulse=pulse, number=2, succeeded=False, result_text="", error="boom")
    PulseAttemptFactory(pulse=pulse, number=3, succeeded=True, result_text="the final answer")
    PulseAttemptFactory(pulse=pulse, number=4, succeeded=False, result_text="half", error="killed")
    body = get(client, f"/api/pulses/{pulse.pk}").json()
    assert body["answer"] == "the final answer" == answers.answer(pulse.pk)


@pytest.mark.parametrize("path", ["/api/pulses/999", "/api/pulses/99999999999999999999999999"])
def test_an_unknown_pulse_is_a_404_with_a_json_detail(client, path):
    response = get(client, path)
    assert response.status_code == 404
    assert response.json() == {"detail": "no pulse with that id"}
    assert post(client, f"{path}/cancel").status_code == 404


def test_cancel_moves_a_pending_pulse_to_cancelled_and_a_second_cancel_is_409(client):
    pulse = PulseFactory()
    response = post(client, f"/api/pulses/{pulse.pk}/cancel")
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    again = post(client, f"/api/pulses/{pulse.pk}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == f"pulse {pulse.pk} is cancelled; only a pending pulse can be cancelled"


def test_stop_stores_the_request_for_a_running_pulse_202_and_refuses_others(client):
    running = PulseFactory(processing=True)
    response = post(client, f"/api/pulses/{running.pk}/stop", {"retry": False})
    assert (response.status_code, response.json()["status"]) == (202, "processing")
    running.refresh_from_db()
    assert (running.stop_requested_by, running.stop_retry) == ("api token settings", False)
    assert post(client, f"/api/pulses/{running.pk}/stop", {"retry": True}).status_code == 202
    assert Pulse.objects.get(pk=running.pk).stop_retry
    pending = PulseFactory()
    refused = post(client, f"/api/pulses/{pending.pk}/stop")
    assert refused.status_code == 409
    assert refused.json()["detail"] == f"pulse {pending.pk} is pending; only a running pulse can be stopped"
    assert post(client, "/api/pulses/999999/stop").status_code == 404
    bad = post(client, f"/api/pulses/{running.pk}/stop", {"retry": "yes"})
    assert bad.status_code == 400 and "retry" in bad.json()["errors"]


def test_reschedule_moves_a_pending_pulse_and_refuses_a_running_one(client):
    pulse = PulseFactory()
    response = post(client, f"/api/pulses/{pulse.pk}/reschedule", {"scheduled_at": "in 2 hours"})
    assert response.status_code == 200
    pulse.refresh_from_db()
    assert (
        timedelta(hours=1, minutes=59) < pulse.scheduled_at - timezone.now() < timedelta(hours=2, minutes=1)
    )
    running = PulseFactory(processing=True)
    conflict = post(client, f"/api/pulses/{running.pk}/reschedule", {"scheduled_at": "now"})
    assert conflict.status_code == 409
    assert "processing" in conflict.json()["detail"]
    assert post(client, f"/api/pulses/{pulse.pk}/reschedule", {}).status_code == 400
    assert post(client, f"/api/pulses/{pulse.pk}/reschedule", {"scheduled_at": "someday"}).status_code == 400


def test_requeue_runs_a_failed_pulse_again_and_refuses_a_pending_one(client):
    failed = PulseFactory(failed=True)
    response = post(client, f"/api/pulses/{failed.pk}/requeue")
    assert (response.status_code, response.json()["status"], response.json()["attempts"]) == (
        200,
        "pending",
        0,
    )
    conflict = post(client, f"/api/pulses/{failed.pk}/requeue")
    assert conflict.status_code == 409
    assert "only a failed, cancelled or completed pulse can be requeued" in conflict.json()["detail"]


def test_requeue_accepts_a_time(client):
    done = PulseFactory(completed=True)
    post(client, f"/api/pulses/{done.pk}/requeue", {"scheduled_at": "in 3 days"})
    done.refresh_from_db()
    assert done.status == Status.PENDING and done.scheduled_at > timezone.now() + timedelta(days=2)


def test_upcoming_lists_pending_pulses_soonest_first(client):
    later = PulseFactory(scheduled_at=timezone.now() + timedelta(hours=5))
    sooner = PulseFactory(scheduled_at=timezone.now() + timedelta(minutes=5))
    PulseFactory(completed=True)
    body = get(client, "/api/pulse/upcoming").json()
    assert [p["id"] for p in body] == [sooner.pk, later.pk]
    assert len(get(client, "/api/pulse/upcoming?limit=1").json()) == 1
    assert get(client, "/api/pulse/upcoming?limit=99999").status_code == 400


def test_status_shows_recent_workers_queue_depth_versions_and_uptime(client, fake_agent):
    PulseFactory.create_batch(2)
    PulseFactory(failed=True)
    report_worker_alive(running=1)
    body = get(client, "/api/status").json()
    assert [w["name"] for w in body["workers"]] == ["box:42"]
    assert body["queue"]["pending"] == 2 and body["queue"]["failed"] == 1
    assert set(body["versions"]) == {"reeve", "django", "python"}
    assert body["uptime_seconds"] >= 0
    assert body["status"] == "ok"
    assert body["agent_problem"] == ""


def test_status_says_why_no_pulse_runs_while_the_agent_command_is_missing(client, settings, tmp_path):
    settings.HAPI_COMMAND = str(tmp_path / "no-agent-here")
    report_worker_alive(running=0)

    body = get(client, "/api/status").json()

    assert "not found or not executable" in body["agent_problem"] and "HAPI_COMMAND" in body["agent_problem"]
    assert body["status"] == f"no pulse runs: {body['agent_problem']}"


def test_stats_counts_runs_per_hour_failure_rate_and_durations(client):
    for ms in (1000, 2000, 3000):
        PulseAttemptFactory(duration_ms=ms)
    PulseAttemptFactory(duration_ms=10_000, succeeded=False, exit_code=1)
    body = get(client, "/api/stats").json()
    assert (body["executed"], body["failed"]) == (4, 1)
    assert body["failure_rate"] == pytest.approx(0.25)
    assert body["success_rate"] == pytest.approx(0.75)
    assert body["average_duration_ms"] == pytest.approx(4000)
    assert body["p95_duration_ms"] == 10_000
    assert len(body["per_hour"]) == 24 and body["per_hour"][-1]["executed"] == 4


def test_the_openapi_schema_documents_every_endpoint(client):
    response = client.get("/api/schema", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {
        "/api/health",
        "/api/pulse/trigger",
        "/api/pulse/schedule",
        "/api/pulses/{id}/tail",
        "/api/pulse/upcoming",
        "/api/pulses",
        "/api/pulses/{id}",
        "/api/pulses/{id}/cancel",
        "/api/pulses/{id}/stop",
        "/api/pulses/{id}/reschedule",
        "/api/pulses/{id}/requeue",
        "/api/status",
        "/api/stats",
        "/api/agent/pulses",
        "/api/agent/pulses/{id}/cancel",
        "/api/agent/pulses/{id}/reschedule",
        "/api/notify",
        "/api/routines",
        "/api/routines/{key}",
        "/api/routines/{key}/pause",
        "/api/routines/{key}/resume",
        "/api/routines/{key}/run",
        "/api/agent/routines",
        "/api/agent/routines/{name}",
        "/api/agent/routines/{name}/pause",
        "/api/queue/pause",
        "/api/queue/resume",
    }
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    detail = schema["components"]["schemas"]["PulseDetail"]["properties"]
    assert detail["answer"]["type"] == "string" and detail["answer"]["readOnly"] is True
    trigger = schema["paths"]["/api/pulse/trigger"]["post"]["requestBody"]["content"]["application/json"]
    trigger = schema["components"]["schemas"][trigger["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]
    assert trigger["priority"]["default"] == "normal"


def test_the_docs_page_loads_its_assets_from_this_server_not_a_cdn(client):
    page = client.get("/api/docs", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, page[:500]
    assert all(s.startswith("/") and not s.startswith("//") for s in sources), sources
    for source in sources:
        assert client.get(source, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200, source
    assert "<script>" not in page  # no inline script: the CSP allows only this server's


@pytest.mark.parametrize("path", ["/api/schema", "/api/docs", "/api/docs/"])
def test_the_schema_and_the_docs_need_a_token_of_any_scope_or_a_staff_login(client, django_user_model, path):
    anonymous = client.get(path)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == 'Bearer realm="reeve"'
    assert client.get(path, HTTP_AUTHORIZATION="Bearer wrong-token-" + "x" * 32).status_code == 401
    _, agent_token = tokens.create("desk", scope=TokenScope.AGENT)
    assert client.get(path, HTTP_AUTHORIZATION=f"Bearer {agent_token}").status_code == 200
    assert client.get(path, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    django_user_model.objects.create_user("bob", password="a-long-password-1")  # noqa: S106
    client.login(username="bob", password="a-long-password-1")  # noqa: S106
    assert client.get(path).status_code == 403  # signed in, but not staff
    django_user_model.objects.filter(username="bob").update(is_staff=True)
    assert client.get(path).status_code == 200  # the docs page fetches the schema with the session


def test_an_unknown_field_is_a_400_naming_it_so_a_typo_never_passes_silently(client):
    response = post(client, "/api/pulse/trigger", {"prompt": "x", "priorty": "low"})
    assert response.status_code == 400
    assert "priorty: unknown field; accepted: prompt, scheduled_at, priority" in response.json()["detail"]
    assert not Pulse.objects.exists()


@pytest.mark.parametrize(("method", "path"), [("get", "/api/nothing"), ("post", "/api/pulses/abc/cancel")])
def test_a_path_that_is_no_endpoint_is_a_json_404(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"no API endpoint at {path}")


def test_a_wrong_method_is_a_405_with_allow(client):
    response = client.delete("/api/pulse/trigger", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405
    assert "POST" in response["Allow"]


@pytest.mark.parametrize(
    "path", ["/api/health/", "/api/docs/", "/api/schema/", "/api/pulses/", "/api/status/"]
)
def test_a_documented_path_with_a_trailing_slash_is_the_same_endpoint(client, path):
    bare = client.get(path.rstrip("/"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    slashed = client.get(path, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert slashed.status_code == bare.status_code == 200
    assert slashed["Content-Type"] == bare["Content-Type"]


def test_a_post_with_a_trailing_slash_reaches_the_endpoint_with_its_body(client):
    response = post(client, "/api/pulse/trigger/", {"prompt": "slashed", "priority": "low"})
    assert response.status_code == 201
    assert Pulse.objects.get().prompt == "slashed"
    assert client.get("/api/nothing/").status_code == 404


def test_the_front_page_leads_to_the_dashboard_through_the_login(client, admin_client):
    assert client.get("/")["Location"] == "/dashboard/"
    assert client.get("/", follow=True).redirect_chain[-1][0].startswith("/admin/login/?next=/dashboard/")
    assert admin_client.get("/", follow=True).templates[0].name == "dashboard/index.html"
    assert client.get("/metrics/").status_code == client.get("/metrics").status_code


def test_a_pulse_may_ask_for_its_answer_on_telegram_and_nothing_else(client):
    asked = post(client, "/api/pulse/trigger", {"prompt": "summarise the news", "deliver": "telegram"})
    plain = post(client, "/api/pulse/trigger", {"prompt": "no reply wanted", "deliver": None})
    wrong = post(client, "/api/pulse/trigger", {"prompt": "x", "deliver": "email"})

    assert asked.status_code == 201 and plain.status_code == 201
    delivery = Delivery.objects.get(pulse_id=asked.json()["id"])
    assert (delivery.chat_id, delivery.reply_to_message_id) == (None, None)  # the configured chat
    assert not Delivery.objects.filter(pulse_id=plain.json()["id"]).exists()
    assert wrong.status_code == 400 and "deliver" in wrong.json()["detail"]


def test_status_shows_each_workers_slots_and_what_runs_in_them(client):
    report_worker_alive(running=0, concurrency=1, critical_reserved=1)
    low = PulseFactory(processing=True, lease_owner="box:42", priority="low", prompt="background research")
    critical = PulseFactory(processing=True, lease_owner="box:42", priority="critical", prompt="hello")
    PulseFactory(processing=True, lease_owner="elsewhere:1", priority="normal")
    [worker] = get(client, "/api/status").json()["workers"]
    assert (worker["concurrency"], worker["critical_reserved"], worker["running"]) == (1, 1, 2)
    assert [(slot["kind"], slot["pulse"]["id"]) for slot in worker["slots"]] == [
        ("critical", critical.pk),
        ("ordinary", low.pk),
    ]
    assert worker["slots"][1]["pulse"]["priority"] == "low"
    assert worker["slots"][1]["pulse"]["prompt"] == "background research"


def test_a_pulse_carries_its_agent_options_and_shows_them(client):
    response = post(
        client,
        "/api/pulse/trigger",
        {"prompt": "Research the week", "model": "opus", "timeout_seconds": 7200, "max_turns": 50},
    )
    assert response.status_code == 201, response.json()
    pulse = Pulse.objects.get(pk=response.json()["id"])
    assert (pulse.model, pulse.timeout_seconds, pulse.max_turns) == ("opus", 7200, 50)
    shown = get(client, f"/api/pulses/{pulse.pk}").json()
    assert (shown["model"], shown["timeout_seconds"], shown["max_turns"]) == ("opus", 7200, 50)
    plain = post(client, "/api/pulse/trigger", {"prompt": "Remind me"}).json()
    assert (plain["model"], plain["timeout_seconds"], plain["max_turns"]) == ("", None, None)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"model": "--dangerously-skip-permissions"}, "model", "is not a model name"),
        ({"model": "-x"}, "model", "is not a model name"),
        ({"model": "sonnet\n--x"}, "model", "is not a model name"),
        ({"model": "a" * 101}, "model", "100"),
        ({"model": 4}, "model", "must be a string"),
        ({"timeout_seconds": 9}, "timeout_seconds", "greater than or equal to 10"),
        ({"timeout_seconds": 86401}, "timeout_seconds", "less than or equal to 86400"),
        ({"timeout_seconds": "60"}, "timeout_seconds", "valid integer"),
        ({"max_turns": 0}, "max_turns", "greater than or equal to 1"),
    ],
)
def test_an_agent_option_out_of_its_allow_list_is_a_400_naming_it(client, change, field, words):
    response = post(client, "/api/pulse/trigger", {"prompt": "x", **change})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert field in body["errors"] and body["detail"].startswith(f"invalid input: {field}: ")
    assert words in body["detail"], body["detail"]
    assert not Pulse.objects.exists()
