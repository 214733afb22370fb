#!/usr/bin/env python3
"""A fake Hapi / Claude Code CLI: real stream-json on stdout, driven by a `mode=NAME[:ARG]` word in the
prompt (or FAKE_AGENT_MODE). Each start (argv, prompt, environment) is appended as one JSON line to
$FAKE_AGENT_LOG.

Modes: success (default), noop, error_result, exit_nonzero, hang, children_ignore_term, flood[:MB],
reject_resume, sleep:SECONDS, first_sleep:SECONDS (sleeps only when it starts a new session, not on a
resume), noise, no_result (exit 0 with no result event), announce:SESSION_ID
(announce that session id, whatever it is), mcp_schedule[:SECONDS] and mcp_schedule_bare[:SECONDS] (call
Reeve's schedule_pulse tool with resume_current_session through its MCP server; see
tests/support/fake_agent_mcp.py), notify (message the user with the send_notification tool, then
answer), nothing (answer NO_REPLY, the agreed "nothing to say"), long:CHARS (an answer of CHARS characters),
detach:SECONDS (start `setsid sleep SECONDS` holding its stdout and stderr, answer and exit), attack (do
with its own shell what a prompt-injected agent would: see `attack`), tool_calls:COUNT[:SECONDS] (COUNT
tool calls, one every SECONDS (0.5), each as Claude Code prints it: an assistant message with a
tool_use block, then a user message with its tool_result; for the run's live tail).

The agent unable to run, printing exactly what Claude Code 2.1.337 / Hapi 0.30.7 print (docs: DESIGN,
measured): not_logged_in (no login, no key), no_hapi_credential (Hapi without CLI_API_TOKEN: stderr
only), retry_401 (a refused key: `api_retry` events that never end), retry:STATUS (the CLI retrying
an API answering STATUS, then giving up), usage_limit[:EPOCH] (a 429 usage limit, with a
`rate_limit_event` rejected resetting at EPOCH when given; from EPOCH on it answers normally),
hit_limit (real Anthropic's "You've hit your limit · resets …" result), usage_warning (a
`rate_limit_event` allowed_warning, then a normal answer).
$FAKE_AGENT_MODE_FILE, when it names a file that exists, gives the mode of a prompt that names none
(a test "fixes the login" by changing it while the worker runs).

`--version` alone prints a version (not Claude Code's) and exits, in any mode, and is not logged as a
start: doctor asks an agent it does not recognise, that is no run (tests count runs), and a mode that
never ends (retry_401, hang) would hold doctor to its 20 s timeout.

With $FAKE_AGENT_END_LOG set, each run's end (or the SIGTERM that ended it) is appended there too, so
tests can tell which runs overlapped; children_ignore_term notes the SIGTERM it ignores there.
"""

import time

STARTED = time.time()  # first thing: "the agent started" for latency measurements

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

# subprocess and uuid are not imported at the top: the few modes that start programs import
# subprocess, and a session id is made below. Workers run this fake hundreds of times a suite, and
# the two imports were a fifth of each start's CPU time.


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def log_start(record):
    path = os.environ.get("FAKE_AGENT_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.close(fd)


def log_end(**extra):
    path = os.environ.get("FAKE_AGENT_END_LOG")
    if path:
        record = {"pulse_id": os.environ.get("REEVE_PULSE_ID"), "pid": os.getpid(), "t": time.time(), **extra}
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.close(fd)


def _terminated(signum, frame):
    log_end(signal=signal.Signals(signum).name)
    sys.exit(128 + signum)


def parse_argv(argv):
    """(resume, prompt) as Claude Code reads them: options up to `--`, the prompt after it."""
    options, prompt = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    resume = None
    for i, word in enumerate(options):
        if word.startswith("--resume="):
            resume = word.split("=", 1)[1]
        elif word == "--resume" and i + 1 < len(options):
            resume = options[i + 1]
    if not prompt and options and not options[-1].startswith("-"):
        prompt = [options[-1]]
    return resume, " ".join(prompt)


def result(session_id, text, *, is_error=False, errors=None):
    event = {
        "type": "result",
        "subtype": "error_during_execution" if is_error else "success",
        "is_error": is_error,
        "result": text,
        "session_id": session_id,
        "num_turns": 2,
        "total_cost_usd": 0.0123,
        "duration_ms": 42,
    }
    if errors:
        event["errors"] = errors
    emit(event)


def mcp_schedule(session_id, delay, *, bare):
    """Schedule a follow-up of this session through Reeve's MCP server, as the real agent would."""
    arguments = {
        "prompt": "Follow up on the first run",
        "when": f"in {int(delay)} seconds" if delay else "now",
        "resume_current_session": True,
        "tags": ["follow-up"],
    }
    emit(
        {
            "type": "assistant",
            "session_id": session_id,
            "message": {
                "content": [
                    {
                        "type": "tool_use",
                        "id": "tool_2",
                        "name": "mcp__reeve__schedule_pulse",
                        "input": arguments,
                    }
                ]
            },
        }
    )
    # This script runs under `python -S`; the MCP client needs site-packages, so it runs apart.
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_agent_mcp.py")
    argv = [sys.executable, helper, "schedule_pulse", json.dumps(arguments)]
    argv += ["--bare-env"] if bare else []
    import subprocess

    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        result(session_id, "the MCP client failed", is_error=True, errors=[proc.stderr[-3000:]])
        return 1
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    emit(
        {
            "type": "user",
            "session_id": session_id,
            "message": {
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tool_2",
                        "content": outcome["text"],
                        "is_error": outcome["is_error"],
                    }
                ]
            },
        }
    )
    if outcome["is_error"]:
        result(session_id, "schedule_pulse failed", is_error=True, errors=[outcome["text"]])
        return 0
    result(session_id, f"Scheduled follow-up pulse #{outcome['structured']['id']}")
    return 0


def tool_calls(session_id, arg):
    """COUNT Bash calls SECONDS apart, in Claude Code's stream-json (tool_use, then tool_result)."""
    count, _, seconds = (arg or "6").partition(":")
    for step in range(1, int(count) + 1):
        tool_id = f"toolu_fake{step:04d}"
        emit(
            {
                "type": "assistant",
                "message": {
                    "id": f"msg_fake{step:04d}",
                    "type": "message",
                    "role": "assistant",
                    "model": "fake-model",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": tool_id,
                            "name": "Bash",
                            "input": {"command": f"echo step {step}", "description": f"Step {step}"},
                        }
                    ],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 4, "output_tokens": 20},
                },
                "parent_tool_use_id": None,
                "session_id": session_id,
            }
        )
        emit(
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [
                        {
                            "tool_use_id": tool_id,
                            "type": "tool_result",
                            "content": f"step {step}",
                            "is_error": False,
                        }
                    ],
                },
                "parent_tool_use_id": None,
                "session_id": session_id,
                "tool_use_result": {
                    "stdout": f"step {step}",
                    "stderr": "",
                    "interrupted": False,
                    "isImage": False,
                },
            }
        )
        time.sleep(float(seconds or 0.5))
    result(session_id, f"Ran {count} steps.")
    return 0


def new_session_id():
    """A random UUID (version 4), as Claude Code makes session ids, written without the uuid module."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def mcp_call(tool, arguments):
    """Call one of Reeve's MCP tools through the Desk's server; {"is_error", "text", "structured"}."""
    import subprocess

    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_agent_mcp.py")
    proc = subprocess.run(
        [sys.executable, helper, tool, json.dumps(arguments)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        return {"is_error": True, "text": proc.stderr[-3000:], "structured": None}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def api_error_message(session_id, text, **fields):
    """The assistant event Claude Code prints when its model's API refused the request."""
    emit(
        {
            "type": "assistant",
            "message": {
                "model": "<synthetic>",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
            },
            "parent_tool_use_id": None,
            "session_id": session_id,
            "is_api_error_message": True,
            **fields,
        }
    )


def api_error_result(session_id, text, **fields):
    emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": True,
            "result": text,
            "session_id": session_id,
            "num_turns": 1,
            "total_cost_usd": 0,
            "terminal_reason": "api_error",
            **fields,
        }
    )


def not_logged_in(session_id, arg):
    text = "Not logged in \u00b7 Please run /login"
    api_error_message(session_id, text, error="authentication_failed", api_error="no_credential")
    api_error_result(session_id, text, api_error_status=None, api_error="no_credential")
    return 1


def no_hapi_credential(session_id, arg):
    sys.stderr.write(
        "\nerror: CLI_API_TOKEN is required. Set it via environment variable or run `hapi auth login`.\n"
        "      at initializeToken (/$bunfs/root/hapi:49208:11)\n"
        "      at async runCli (/$bunfs/root/hapi:229354:20)\n\nBun v1.4.2 (Linux x64)\n"
        "Binary exited with status 1.\n"
    )
    return 1


def api_retries(session_id, status, error, *, count, then_give_up):
    for attempt in range(1, count + 1):
        emit(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": attempt,
                "max_retries": 10,
                "retry_delay_ms": 200,
                "error_status": status,
                "error": error,
                "session_id": session_id,
            }
        )
        time.sleep(0.2)
    if not then_give_up:
        time.sleep(10_000)
    text = f"API Error: {status} overloaded"
    api_error_message(session_id, text, error="unknown", api_error_status=status)
    api_error_result(session_id, text, api_error_status=status)
    return 1


def retry_401(session_id, arg):
    return api_retries(session_id, 401, "authentication_failed", count=10, then_give_up=False)


def retry_status(session_id, arg):
    return api_retries(session_id, int(arg or 529), "server_error", count=10, then_give_up=True)


def usage_limit(session_id, arg):
    if arg:
        info = {"status": "rejected", "resetsAt": int(float(arg)), "rateLimitType": "five_hour"}
        emit({"type": "rate_limit_event", "rate_limit_info": info, "session_id": session_id})
    text = "API Error: Request rejected (429) \u00b7 usage limit reached"
    fields = {"api_error_status": 429}
    api_error_message(session_id, text, error="rate_limit", api_error_type="rate_limit_error", **fields)
    api_error_result(session_id, text, **fields)
    return 1


def hit_limit(session_id, arg):
    text = "You've hit your limit \u00b7 resets 3pm (Europe/Berlin)"
    api_error_message(session_id, text, error="rate_limit", api_error_status=429)
    api_error_result(session_id, text, api_error_status=429)
    return 1


def usage_warning(session_id, arg):
    info = {"status": "allowed_warning", "resetsAt": int(time.time()) + 7200, "rateLimitType": "five_hour"}
    emit({"type": "rate_limit_event", "rate_limit_info": info, "session_id": session_id})
    result(session_id, "Done, close to the limit")
    return 0


CANNOT_RUN = {
    "not_logged_in": not_logged_in,
    "no_hapi_credential": no_hapi_credential,
    "retry_401": retry_401,
    "retry": retry_status,
    "usage_limit": usage_limit,
    "hit_limit": hit_limit,
    "usage_warning": usage_warning,
}


def shell(command, timeout=30):
    """`command` run by /bin/sh as the agent's Bash tool would: (exit code, output)."""
    import subprocess

    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return None, "timed out"
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")


def attack(session_id):
    """What an injected agent tries with its own shell, from $FAKE_AGENT_ATTACK (JSON): `read`, files
    to cat; `connect`, psql command lines (the database's URL without the password it never got, its
    socket folders); `login`, Claude Code's login file. Every /proc/*/environ and cmdline it can see
    is dumped too, and one of Reeve's MCP tools called. The report goes to attack-report.json in the
    Desk (its working directory)."""
    plan = json.loads(os.environ.get("FAKE_AGENT_ATTACK", "{}"))
    report = {"read": {}, "connect": {}}
    for path in plan.get("read", []):
        code, output = shell(f"cat '{path}'")
        report["read"][path] = [code, output[:2000]]
    for command in plan.get("connect", []):
        report["connect"][command] = shell(f"PGCONNECT_TIMEOUT=5 {command} -w -c 'select 1' </dev/null")
    report["processes"] = shell(
        "for d in /proc/[0-9]*; do echo \"== $d $(tr '\\0' ' ' <$d/cmdline 2>/dev/null)\"; "
        "tr '\\0' '\\n' <$d/environ 2>/dev/null; done"
    )[1]
    if plan.get("login"):
        report["login"] = shell(f"cat {plan['login']!r}")
    report["mcp"] = mcp_call("list_upcoming_pulses", {})
    with open("attack-report.json", "w") as fh:
        json.dump(report, fh)
    result(session_id, "I looked around.")
    return 0


def detach(session_id, seconds):
    """Leave a child in a session of its own holding our stdout and stderr, then finish."""
    import subprocess

    subprocess.Popen(["setsid", "sleep", str(seconds)], stdin=subprocess.DEVNULL)
    result(session_id, "Left something running.")
    return 0


def main():
    started = STARTED
    if sys.argv[1:] == ["--version"]:  # as an agent CLI answers it (doctor asks): no run, no log line
        print("0.0.0 (Reeve's fake agent)")
        return 0
    resume, prompt = parse_argv(sys.argv[1:])
    match = re.search(r"\bmode=(\w+)(?::(\S+))?", prompt)
    mode, arg = (
        (match.group(1), match.group(2)) if match else (os.environ.get("FAKE_AGENT_MODE", "success"), None)
    )
    mode_file = os.environ.get("FAKE_AGENT_MODE_FILE", "")
    if not match and mode_file and os.path.exists(mode_file):
        with open(mode_file) as fh:
            word = fh.read().strip()
        mode, _, arg = word.partition(":")
        arg = arg or None
    log_start(
        {
            "pulse_id": os.environ.get("REEVE_PULSE_ID"),
            "pid": os.getpid(),
            "t": started,
            "resume": resume,
            "mode": mode,
            "cwd": os.getcwd(),
            "argv": sys.argv[1:],
            "prompt": prompt,
            "env": dict(os.environ),
        }
    )
    if mode == "noop":
        result(resume or "", "done")
        return 0
    if mode == "no_result":  # what a front end printing its help instead of running looks like
        sys.stdout.write("Usage: agent [options]\n")
        return 0
    if mode == "reject_resume" and resume:
        sys.stderr.write(f"No conversation found with session ID: {resume}\n")
        result("", f"No conversation found with session ID: {resume}", is_error=True)
        return 1
    if mode == "no_hapi_credential":  # Hapi stops before it starts any agent
        return no_hapi_credential("", arg)
    # mode=announce:ID announces ID as its session (an agent that misbehaves, or a test of one)
    session_id = resume or (arg if mode == "announce" and arg else new_session_id())
    emit(
        {
            "type": "system",
            "subtype": "init",
            "session_id": session_id,
            "cwd": os.getcwd(),
            "tools": ["Bash", "Read"],
            "model": "fake-model",
        }
    )
    if mode == "usage_limit" and arg and time.time() >= float(arg):
        mode = "success"  # the window has reset
    if mode in CANNOT_RUN:
        return CANNOT_RUN[mode](session_id, arg)
    if mode == "tool_calls":
        return tool_calls(session_id, arg)
    if mode == "noise":
        sys.stdout.write("\x1b[2K\x1b[1Gthinking...\n")
        sys.stdout.write("\x1b[32m" + json.dumps({"type": "system", "subtype": "status"}) + "\n")
    emit(
        {
            "type": "assistant",
            "session_id": session_id,
            "message": {
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "tool_1", "name": "Bash", "input": {"command": "ls"}},
                ]
            },
        }
    )
    emit(
        {
            "type": "user",
            "session_id": session_id,
            "message": {"content": [{"type": "tool_result", "tool_use_id": "tool_1", "content": "notes.md"}]},
        }
    )
    if mode in ("mcp_schedule", "mcp_schedule_bare"):
        return mcp_schedule(session_id, arg, bare=mode == "mcp_schedule_bare")
    if mode == "notify":
        outcome = mcp_call("send_notification", {"message": "Told you directly: all done"})
        if outcome["is_error"]:
            result(session_id, "send_notification failed", is_error=True, errors=[outcome["text"]])
            return 0
        result(session_id, "I sent you a notification.")
        return 0
    if mode == "attack":
        return attack(session_id)
    if mode == "detach":
        return detach(session_id, float(arg or 90))
    if mode == "nothing":
        result(session_id, "NO_REPLY")
        return 0
    if mode == "unstorable":  # a lone surrogate in its answer: no database can store that text
        result(session_id, "half an emoji: \ud83d and the rest")
        return 0
    if mode == "long":
        size = int(arg or 5000)
        result(session_id, ("All work and no play makes Jack a dull boy. " * (size // 40 + 1))[:size])
        return 0
    if mode == "error_result":
        result(
            session_id, "I could not finish", is_error=True, errors=["Tool Bash failed: permission denied"]
        )
        return 0
    if mode == "exit_nonzero":
        sys.stderr.write("fatal: the agent crashed: API overloaded\n")
        return 2
    if mode == "hang":
        time.sleep(10_000)
    if mode == "children_ignore_term":
        pid_file = arg or os.environ.get("FAKE_AGENT_CHILDREN", "")
        import subprocess

        code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(10000)"
        children = [subprocess.Popen([sys.executable, "-S", "-c", code]) for _ in range(2)]
        if pid_file:
            with open(pid_file, "w") as fh:
                fh.write("\n".join(str(c.pid) for c in children))
        if os.environ.get("FAKE_AGENT_END_LOG"):  # noted, and ignored: only SIGKILL ends it
            signal.signal(signal.SIGTERM, lambda signum, frame: log_end(signal="SIGTERM", ignored=True))
        else:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(10_000)
    if mode == "flood":
        megabytes = int(arg or 100)
        line = (
            json.dumps(
                {
                    "type": "assistant",
                    "session_id": session_id,
                    "message": {"content": [{"type": "text", "text": "x" * 1000}]},
                }
            )
            + "\n"
        )
        for _ in range(megabytes * 1024 * 1024 // len(line)):
            sys.stdout.write(line)
        sys.stdout.write("y" * (6 * 1024 * 1024) + "\n")  # one line past the reader's limit
    if mode == "sleep" or (mode == "first_sleep" and not resume):
        time.sleep(float(arg or 1))
    result(session_id, f"Done: {prompt[:80]}")
    return 0


if __name__ == "__main__":
    if os.environ.get("FAKE_AGENT_END_LOG"):
        signal.signal(signal.SIGTERM, _terminated)
    code = main()
    log_end(code=code)
    sys.exit(code)
