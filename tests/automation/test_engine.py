"""The engine commands' command lines: one process each, the flags the CLI expects."""

from __future__ import annotations

from pulumi.automation import LocalWorkspace

from automation import engine


class Recorder:
    """Records the CLI arguments instead of running the engine."""

    def __init__(self):
        self.args: list[list[str]] = []

    def __call__(self, args, on_output=None, on_error=None):
        self.args.append(list(args))
        return None


def attached(monkeypatch, tmp_path):
    workspace = LocalWorkspace.__new__(LocalWorkspace)  # no CLI behind it: nothing may run
    workspace.work_dir = str(tmp_path)
    stack = engine.attach("tenant-acme", workspace)
    recorder = Recorder()
    monkeypatch.setattr(stack, "_run_pulumi_cmd_sync", recorder)
    return stack, recorder


def test_attach_makes_no_cli_call(tmp_path):
    workspace = LocalWorkspace.__new__(LocalWorkspace)
    stack = engine.attach("tenant-acme", workspace)
    assert stack.name == "tenant-acme" and stack.workspace is workspace


def test_update_is_one_up_process_with_message_policy_and_refresh(monkeypatch, tmp_path):
    stack, recorder = attached(monkeypatch, tmp_path)
    engine.update(stack, message="[cameleer] who=a why=b", policy_packs=["/repo/policy"], refresh=True)
    [args] = recorder.args
    assert args[:3] == ["up", "--yes", "--skip-preview"]
    assert args[args.index("--message") + 1] == "[cameleer] who=a why=b"
    assert args[args.index("--policy-pack") + 1] == "/repo/policy"
    assert "--refresh" in args and "--event-log" not in args
    assert args[-2:] == ["--exec-kind", "auto.local"]


def test_update_without_policy_or_refresh_adds_neither(monkeypatch, tmp_path):
    stack, recorder = attached(monkeypatch, tmp_path)
    engine.update(stack, message="m")
    [args] = recorder.args
    assert "--policy-pack" not in args and "--refresh" not in args


def test_refresh_and_destroy_skip_their_previews(monkeypatch, tmp_path):
    stack, recorder = attached(monkeypatch, tmp_path)
    engine.refresh(stack, message="m", clear_pending_creates=True)
    engine.destroy(stack, message="m")
    refresh, destroy = recorder.args
    assert refresh[:3] == ["refresh", "--yes", "--skip-preview"] and "--clear-pending-creates" in refresh
    assert destroy[:3] == ["destroy", "--yes", "--skip-preview"]


def test_events_are_streamed_when_someone_listens(monkeypatch, tmp_path):
    stack, recorder = attached(monkeypatch, tmp_path)
    monkeypatch.setattr(type(stack.workspace), "pulumi_version", property(lambda self: "3.259.0"))
    engine.update(stack, message="m", on_event=lambda event: None)
    [args] = recorder.args
    assert args[args.index("--event-log") + 1].startswith("tcp://127.0.0.1:")
