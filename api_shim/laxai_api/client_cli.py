"""``laxai``: submit, follow and cancel training jobs from a shell (uses :class:`LaxAIClientSync`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from laxai_api.client import DEFAULT_URL, TERMINAL, LaxAIClientSync, LaxAIError

#: --flag -> (section, key) of the request.
OVERRIDES = {
    "epochs": ("training_kwargs", "num_epochs"),
    "batch_size": ("training_kwargs", "batch_size"),
    "learning_rate": ("training_kwargs", "learning_rate"),
    "images_per_player": ("training_kwargs", "images_per_player"),
    "num_workers": ("training_kwargs", "num_workers"),
    "embedding_dim": ("model_kwargs", "embedding_dim"),
}
#: Log lines fetched per poll by ``logs -f``.
FOLLOW_WINDOW = 1000


def parse_document(text: str, name: str) -> Any:
    """JSON when it looks like JSON (a trailing comma is then a JSON error, not a YAML string), else YAML;
    errors name the file."""
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"{name}: invalid YAML{where}: {problem}") from None


def load_request(path: str) -> dict[str, Any]:
    """A request from a file: a TrainingJob manifest (its spec is used), a spec, or a seed body."""
    name = "<stdin>" if path == "-" else path
    doc = parse_document(sys.stdin.read() if path == "-" else Path(path).read_text(), name)
    if not isinstance(doc, dict):
        raise ValueError(f"{name}: expected a mapping (a TrainingJob, its spec, or a training request)")
    if "spec" in doc and ("kind" in doc or "apiVersion" in doc):
        doc = doc["spec"]
        if not isinstance(doc, dict):
            raise ValueError(f"{name}: spec must be a mapping")
    return doc


def set_path(request: dict[str, Any], dotted: str, value: Any) -> None:
    node = request
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: {key} is not a mapping")
    node[last] = value


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    request = load_request(args.file) if args.file else {}
    if args.tenant:
        request["tenant_id"] = args.tenant
    if "tenant_id" not in request:
        raise ValueError("give --tenant or -f FILE with a tenant_id")
    if args.name:
        request["custom_name"] = args.name
    for flag, (section, key) in OVERRIDES.items():
        value = getattr(args, flag)
        if value is not None:
            set_path(request, f"{section}.{key}", value)
    for item in args.set or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        set_path(request, key, yaml.safe_load(raw))
    return request


def new_lines(previous: list[str], current: list[str]) -> list[str]:
    """Lines of ``current`` (a later tail of the same log) not already in ``previous``.

    Both tails end at the log's end at the time they were read, so the unseen lines
    follow the longest prefix of ``current`` that is a suffix of ``previous``.
    """
    for overlap in range(min(len(previous), len(current)), 0, -1):
        if previous[-overlap:] == current[:overlap]:
            return current[overlap:]
    return current


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _print_json(body: Any) -> None:
    print(json.dumps(body, indent=2))


def cmd_submit(client: LaxAIClientSync, args: argparse.Namespace) -> int:
    response = client.start_training(build_request(args), idempotency_key=args.idempotency_key)
    if args.json:
        _print_json(response)
    else:
        print(response["task_id"])
        print(response["message"], file=sys.stderr)
    if args.wait:
        return cmd_wait(client, argparse.Namespace(task_id=response["task_id"], interval=args.interval, timeout=None))
    return 0


def summary_lines(body: dict[str, Any]) -> list[str]:
    """A status (or detail) response, readable: what `laxai status` prints without --json."""
    from laxai_api.progress_view import numbers_line
    from laxai_trainer.status import Progress

    p = Progress.model_validate(body["progress"])
    out = [f"{body['task_id']}: {body['status']}", f"  {numbers_line(p, time.time())}"]
    message = body.get("message") or ""
    out += [f"  {line}" for line in message.splitlines()[:1]]
    if p.message and p.message != message:
        out.append(f"  trainer: {p.message.splitlines()[0]}")
    for key in ("tenant_id", "run_name", "reason", "created_at", "started_at", "completed_at", "attempts"):
        if body.get(key) not in (None, ""):
            out.append(f"  {key}: {body[key]}")
    metrics = body.get("metrics") or {}
    if metrics:
        out.append("  metrics: " + "  ".join(f"{k} {_fmt(metrics.get(k))}" for k in ("rank1", "rank5", "mAP")
                                             if metrics.get(k) is not None))
        for key in ("model_uri", "run_uri"):
            if metrics.get(key):
                out.append(f"  {key.removesuffix('_uri')}: {metrics[key]}")
    return out


def cmd_status(client: LaxAIClientSync, args: argparse.Namespace) -> int:
    body = client.get_training_job(args.task_id) if args.detail else client.get_training_status(args.task_id)
    if args.json:
        _print_json(body)
    else:
        print("\n".join(summary_lines(body)))
    return 0


def cmd_list(client: LaxAIClientSync, args: argparse.Namespace) -> int:
    token, jobs, total = None, [], 0
    while True:
        page = client.list_training_jobs(status=args.status, tenant_id=args.tenant, limit=args.limit, continue_token=token)
        jobs += page["jobs"]
        total, token = page["total_jobs"], page.get("continue")
        if not (args.all and token):
            break
    if args.json:
        _print_json({"total_jobs": total, "jobs": jobs})
        return 0
    print(f"{'TASK_ID':<38} {'TENANT':<16} {'STATUS':<10} {'EPOCH':>9} {'TRAIN_LOSS':>10} {'BEST_mAP':>9}  CREATED")
    for job in jobs:
        p = job["progress"]
        epoch = f"{p.get('current_epoch') or 0}/{p.get('total_epochs') or '?'}"
        print(f"{job['task_id']:<38} {job['tenant_id']:<16} {job['status']:<10} {epoch:>9} "
              f"{_fmt(p.get('current_loss')):>10} {_fmt(p.get('best_map')):>9}  {job.get('created_at') or ''}")
    print(f"{len(jobs)} of {total} jobs" + (" (more: --all)" if token and not args.all else ""), file=sys.stderr)
    return 0


def cmd_logs(client: LaxAIClientSync, args: argparse.Namespace) -> int:
    # Following compares tails of one size: with a smaller first tail, the next (larger) one
    # would not start inside it and new_lines would print the whole log again.
    window = max(args.tail, FOLLOW_WINDOW) if args.follow else args.tail
    seen = client.get_logs(args.task_id, tail=window)["lines"]
    for line in seen[len(seen) - min(args.tail, len(seen)):]:
        print(line)
    while args.follow:
        finished = client.get_training_status(args.task_id)["status"] in TERMINAL
        current = client.get_logs(args.task_id, tail=window)["lines"]
        for line in new_lines(seen, current):
            print(line, flush=True)
        seen = current
        if finished:
            break
        time.sleep(args.interval)
    return 0


def cmd_cancel(client: LaxAIClientSync, args: argparse.Namespace) -> int:
    response = client.cancel_training_job(args.task_id)
    said = response["progress"].get("message") if response["status"] == "running" else response["message"]
    print(f"{response['task_id']}: {response['status']} ({said or response['message']})")
    return 0


def cmd_rm(client: LaxAIClientSync, args: argparse.Namespace) -> int:
    for task_id in args.task_ids:
        response = client.purge_training_job(task_id)
        print(f"{task_id}: {response['message']}")
    return 0


def cmd_wait(client: LaxAIClientSync, args: argparse.Namespace) -> int:
    from laxai_api.progress_view import ProgressView, parse_time

    first = client.get_training_job(args.task_id)  # an unknown id is a 404 before anything is drawn
    view = ProgressView(sys.stderr, started_at=parse_time(first.get("started_at")))
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    status, next_poll = first, time.monotonic() + args.interval
    try:
        view.update(status)
        while status["status"] not in TERMINAL:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {args.task_id} still {status['status']} after {args.timeout} s")
            time.sleep(max(min(1.0, next_poll - time.monotonic()), 0.0))
            if time.monotonic() >= next_poll:
                status, next_poll = client.get_training_status(args.task_id), time.monotonic() + args.interval
                view.update(status)
            else:
                view.tick()  # the clock and ETA move between polls
    finally:
        view.close()
    final = status
    print(f"{args.task_id}: {final['status']} ({final['message'].splitlines()[0] if final['message'] else ''})")
    if final["status"] == "completed":
        metrics = client.get_training_job(args.task_id).get("metrics") or {}
        if metrics:
            print("  " + "  ".join(f"{k}={_fmt(metrics.get(k))}" for k in ("rank1", "rank5", "mAP")))
            if metrics.get("model_uri"):
                print(f"  model: {metrics['model_uri']}")
        return 0
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laxai", description="Submit, follow and cancel LaxAI training jobs.",
        epilog="Settings read: LAXAI_API_URL (--url), LAXAI_API_KEY (--api-key).",
    )
    parser.add_argument("--url", help=f"API URL (default: LAXAI_API_URL, else {DEFAULT_URL})")
    parser.add_argument("--api-key", help="API key (default: LAXAI_API_KEY)")
    parser.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout in seconds (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", help="start a training job; prints its task id")
    submit.add_argument("-f", "--file", help="TrainingJob YAML, its spec, or a request body (JSON/YAML; - = stdin)")
    submit.add_argument("--tenant", help="tenant_id")
    submit.add_argument("--name", help="custom_name (the run folder)")
    submit.add_argument("--epochs", type=int, help="training_kwargs.num_epochs")
    submit.add_argument("--batch-size", type=int, help="training_kwargs.batch_size")
    submit.add_argument("--learning-rate", type=float, help="training_kwargs.learning_rate")
    submit.add_argument("--images-per-player", type=int, help="training_kwargs.images_per_player")
    submit.add_argument("--num-workers", type=int, help="training_kwargs.num_workers")
    submit.add_argument("--embedding-dim", type=int, help="model_kwargs.embedding_dim")
    submit.add_argument("--set", action="append", metavar="KEY=VALUE", help="any field, dotted (training_kwargs.margin=0.3)")
    submit.add_argument("--idempotency-key", help="retrying with the same key returns the first job")
    submit.add_argument("--wait", action="store_true", help="then follow it like `laxai wait`")
    submit.add_argument("--interval", type=float, default=2.0, help="poll interval with --wait (default: %(default)s s)")
    submit.add_argument("--json", action="store_true", help="print the whole response")

    status = sub.add_parser("status", help="a job's status and progress, readable (--json: the raw body)")
    status.add_argument("task_id", help="the job's task id")
    status.add_argument("--detail", action="store_true", help="spec, conditions, timestamps, metrics too")
    status.add_argument("--json", action="store_true", help="print the response body as JSON")

    lst = sub.add_parser("list", help="jobs, newest first")
    lst.add_argument("--status", choices=["pending", "running", "completed", "failed", "cancelled"],
                     help="only jobs in this status")
    lst.add_argument("--tenant", help="only this tenant's jobs")
    lst.add_argument("--limit", type=int, default=100, help="jobs per page (default: %(default)s)")
    lst.add_argument("--all", action="store_true", help="every page")
    lst.add_argument("--json", action="store_true", help="print the jobs as JSON")

    logs = sub.add_parser("logs", help="the trainer's log")
    logs.add_argument("task_id", help="the job's task id")
    logs.add_argument("--tail", type=int, default=100, help="lines from the end (default: %(default)s)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--interval", type=float, default=2.0, help="poll interval with -f (default: %(default)s s)")

    cancel = sub.add_parser("cancel", help="cancel a job (answers at once; `laxai wait` follows it to cancelled)")
    cancel.add_argument("task_id", help="the job's task id")

    rm = sub.add_parser("rm", help="remove finished jobs and their run folders (checkpoints, model, logs)")
    rm.add_argument("task_ids", nargs="+", metavar="task_id", help="a finished job's task id")

    wait = sub.add_parser("wait", help="progress bar until the job ends; exit 0 only when completed")
    wait.add_argument("task_id", help="the job's task id")
    wait.add_argument("--interval", type=float, default=2.0, help="poll interval (default: %(default)s s)")
    wait.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    return parser


COMMANDS = {
    "submit": cmd_submit, "status": cmd_status, "list": cmd_list,
    "logs": cmd_logs, "cancel": cmd_cancel, "wait": cmd_wait, "rm": cmd_rm,
}


def report_error(exc: LaxAIError) -> None:
    print(f"laxai: {exc}", file=sys.stderr)
    for err in exc.details.get("errors", []) if isinstance(exc.details, dict) else []:
        print(f"  {err.get('field') or '.'.join(err.get('location', []))}: {err.get('reason')}", file=sys.stderr)


def main(argv: list[str] | None = None, transport: Any = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with LaxAIClientSync(args.url, args.api_key, timeout=args.timeout, transport=transport) as client:
            return COMMANDS[args.command](client, args)
    except LaxAIError as exc:
        report_error(exc)
        return 1
    except (ValueError, OSError, yaml.YAMLError) as exc:
        print(f"laxai: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"laxai: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
