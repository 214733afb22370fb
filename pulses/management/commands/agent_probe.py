import shlex

from django.core.management.base import CommandError

from pulses import queue
from pulses.agent.executor import AgentRequest
from pulses.management.base import ReeveCommand
from pulses.worker.run import default_executor


class Command(ReeveCommand):
    """Run one prompt through the configured agent command (HAPI_COMMAND) in the Desk, as the worker would,
    and print what Reeve understood: the argv, the session, the result or the error in the agent's words,
    cost and turns, then Reeve's hint when the agent cannot run now (not logged in, no credential, a usage
    limit) with the command that fixes it. Nothing is queued. A run that works ends a hold of the queue
    (the held pulses run at once). Exit 1 when the run failed."""

    def add_arguments(self, parser):
        parser.add_argument("prompt", help='what to ask the agent, e.g. "Test prompt"')

    def handle(self, *args, prompt: str, **options) -> None:
        executor = default_executor(None)
        request = AgentRequest(prompt=prompt)
        self.stdout.write(f"argv:     {shlex.join(executor.argv(request))}")
        self.stdout.write(f"desk:     {executor.desk}")
        outcome = executor.run(request)
        self.stdout.write(f"exit:     {outcome.exit_code} after {outcome.duration_ms / 1000:.1f} s")
        self.stdout.write(f"session:  {outcome.session_id or '-'}")
        cost = "-" if outcome.cost_usd is None else f"${outcome.cost_usd:.4f}"
        self.stdout.write(
            f"cost:     {cost}, turns: {outcome.num_turns if outcome.num_turns is not None else '-'}"
        )
        if outcome.warning:
            self.stdout.write(f"warning:  {outcome.warning}")
        if outcome.success:
            self.stdout.write(f"result:   {outcome.result_text}")
            if queue.agent_ready(by="agent_probe"):
                self.stdout.write("reeve:    the agent runs again: the held queue resumes now")
            return
        self.stdout.write(f"error:    {outcome.error}")
        if outcome.stderr_tail.strip():
            self.stdout.write("stderr (last lines):")
            for line in outcome.stderr_tail.strip().splitlines()[-10:]:
                self.stdout.write(f"  {line}")
        if outcome.unavailable is not None:
            self.stdout.write(f"reeve:    {outcome.unavailable.hint()}")
        raise CommandError("the agent run failed (the error above is in the agent's words)")
