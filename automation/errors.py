"""What went wrong in an engine operation, and whether trying again can help.

Every failure that leaves the automation layer is an `OperationError` with a `kind`:

| kind       | meaning                                                   | retry?                     |
|------------|-----------------------------------------------------------|----------------------------|
| config     | bad input: config, stack name, secrets passphrase, an invalid manifest | no            |
| not_found  | the stack (or tenant) does not exist                      | no                         |
| policy     | a mandatory CrossGuard policy stopped the operation       | no (fix the input)         |
| conflict   | the stack is locked by a live operation                   | later (`retry_after`)      |
| transient  | the cluster, backend or network hiccupped                 | yes, with backoff          |
| unknown    | anything else (a program bug, a provider crash)           | no; a person has to look   |

`classify()` decides from the engine's own words: the exception type raised by the
Automation API, the CLI's stderr/stdout, and the policy events seen during the operation.
The texts it matches are the Pulumi CLI's (see tests/automation/test_errors.py, which
holds real outputs of the v3.259.0 CLI).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from pulumi.automation import errors as auto_errors

if TYPE_CHECKING:
    from .events import PolicyViolation


class ErrorKind(str, Enum):
    CONFIG = "config"
    NOT_FOUND = "not_found"
    POLICY = "policy"
    CONFLICT = "conflict"
    ROLLOUT = "rollout"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"

    @property
    def retryable(self) -> bool:
        return self in (ErrorKind.CONFLICT, ErrorKind.TRANSIENT)


class OperationError(Exception):
    """A classified failure of an engine operation (or of its preconditions)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        stack: str | None = None,
        operation: str | None = None,
        policy_violations: Sequence[PolicyViolation] = (),
        detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = ErrorKind(kind)
        self.message = message
        self.stack = stack
        self.operation = operation
        self.policy_violations = tuple(policy_violations)
        self.detail = detail
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    def __str__(self) -> str:
        where = f"{self.operation} {self.stack}: " if self.stack and self.operation else (
            f"{self.stack}: " if self.stack else ""
        )
        return f"[{self.kind.value}] {where}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "retryable": self.retryable,
            "message": self.message,
            "stack": self.stack,
            "operation": self.operation,
            "policy_violations": [v.to_dict() for v in self.policy_violations],
            "retry_after": self.retry_after,
        }


@dataclass(frozen=True)
class _Rule:
    kind: ErrorKind
    pattern: re.Pattern[str]
    summary: str | None = None  # a fixed summary; else the matching line is the message


def _rule(kind: ErrorKind, regex: str, summary: str | None = None) -> _Rule:
    return _Rule(kind, re.compile(regex, re.IGNORECASE), summary)


# Order matters: the first matching rule wins. Conflicts and policy before anything else
# (their texts can mention a failed update), then bad input, then the transient list.
RULES: tuple[_Rule, ...] = (
    # --- conflict: the stack's lock is held
    _rule(ErrorKind.CONFLICT, r"the stack is currently locked by"),
    _rule(ErrorKind.CONFLICT, r"\[409\] Conflict: Another update is currently in progress"),
    _rule(ErrorKind.CONFLICT, r"another update is currently in progress"),
    _rule(ErrorKind.CONFLICT, r"stack '[^']*' already exists|stack .* already exists"),
    # --- policy
    _rule(ErrorKind.POLICY, r"mandatory policy violation"),
    _rule(ErrorKind.POLICY, r"\[mandatory\]"),
    # --- a workload that cannot roll out (quota, scheduling, failing pods): the provider
    # gave up awaiting it. Before the transient list, whose "timed out" its text contains.
    _rule(ErrorKind.ROLLOUT, r"failed to fully initialize or become live"),
    # --- not found
    _rule(ErrorKind.NOT_FOUND, r"no stack named .* found"),
    # --- config / validation
    _rule(ErrorKind.CONFIG, r"Missing required configuration variable"),
    _rule(ErrorKind.CONFIG, r"ConfigMissingError|ConfigTypeError|CatalogError|StackConfigError"),
    _rule(ErrorKind.CONFIG, r"invalid configuration for stack"),
    _rule(ErrorKind.CONFIG, r"configuration key .* is not (namespaced|valid)"),
    _rule(ErrorKind.CONFIG, r"passphrase must be set|incorrect passphrase|"
                            r"failed to decrypt|decrypting secret|constructing secrets manager"),
    _rule(ErrorKind.CONFIG, r"could not parse --json argument|unknown flag|invalid argument"),
    _rule(ErrorKind.CONFIG, r"no Pulumi\.yaml project file found|could not find Pulumi\.yaml"),
    _rule(ErrorKind.CONFIG, r"stack names? (may only contain|are limited to)|invalid stack name"),
    _rule(ErrorKind.CONFIG, r"could not load policy pack|policy pack .* not found|"
                            r"PulumiPolicy\.yaml"),
    # Kubernetes admission / validation answers: the manifest itself is wrong.
    _rule(ErrorKind.CONFIG, r"\bis invalid\b.*(Invalid value|Required value|Unsupported value)"),
    _rule(ErrorKind.CONFIG, r"violates PodSecurity"),
    _rule(ErrorKind.CONFIG, r"exceeded quota|forbidden: .*quota"),
    # --- transient: the network, the cluster, the state backend
    _rule(ErrorKind.TRANSIENT, r"connection refused|connection reset by peer|broken pipe"),
    _rule(ErrorKind.TRANSIENT, r"i/o timeout|context deadline exceeded|TLS handshake timeout|"
                               r"timed out|timeout awaiting response headers"),
    _rule(ErrorKind.TRANSIENT, r"temporary failure in name resolution|no route to host"),
    _rule(ErrorKind.TRANSIENT, r"(status(code)?[ :=]*|\[|HTTP/[\d.]+ )(429|502|503|504)\b|"
                               r"too many requests|service unavailable|bad gateway|gateway timeout"),
    _rule(ErrorKind.TRANSIENT, r"the server is currently unable to handle the request|"
                               r"etcdserver: (request timed out|leader changed)"),
    _rule(ErrorKind.TRANSIENT, r"the object has been modified; please apply your changes"),
    _rule(ErrorKind.TRANSIENT, r"StatusCode\.UNAVAILABLE|code = Unavailable|unexpected EOF"),
    _rule(ErrorKind.TRANSIENT, r"the secrets server is (sealed|unreachable)"),
    _rule(ErrorKind.TRANSIENT, r"failed to ping PostgreSQL|too many clients already|"
                               r"the database system is (starting up|shutting down)"),
)

# Lines that carry no information of their own (the CLI's framing around the real error).
_NOISE = re.compile(
    r"^\s*(code: \d+|stdout:|stderr:|Updating \(|Previewing |Refreshing |Destroying |"
    r"View Live:|Resources:|Duration:|Type\s+Name|\+\s+pulumi:pulumi:Stack|"
    r"@ (updating|previewing|refreshing)|$)",
)


def classify(
    failure: BaseException | str,
    *,
    stack: str | None = None,
    operation: str | None = None,
    policy_violations: Iterable[PolicyViolation] = (),
    diagnostics: Iterable[str] = (),
) -> OperationError:
    """Turn an exception (or the CLI's output) into an `OperationError`.

    `policy_violations` are the violations seen as engine events during the operation; a
    mandatory one makes the failure a policy failure whatever the text says.
    `diagnostics` are the engine's error diagnostics (event messages), which name the
    failing resource more precisely than stderr does.
    """
    if isinstance(failure, OperationError):
        return failure
    violations = list(policy_violations)
    mandatory = [v for v in violations if v.mandatory]
    text = str(failure)
    diagnostics = [d for d in diagnostics if d and d.strip()]
    detail = _tail(text)

    if mandatory:
        names = ", ".join(sorted({v.policy for v in mandatory}))
        return OperationError(
            ErrorKind.POLICY,
            f"{len(mandatory)} mandatory policy violation(s): {names}",
            stack=stack, operation=operation, policy_violations=violations, detail=detail,
        )

    # The Automation API's own error types are the most reliable signal.
    if isinstance(failure, auto_errors.ConcurrentUpdateError):
        return OperationError(ErrorKind.CONFLICT, _first_line(text, RULES[0]) or "stack is locked",
                              stack=stack, operation=operation, detail=detail, retry_after=30.0)
    if isinstance(failure, auto_errors.StackNotFoundError):
        name = stack or "the stack"
        return OperationError(
            ErrorKind.NOT_FOUND,
            f"stack {name} does not exist (an update creates it: `cameleer up {name} --create --reason ...`)",
            stack=stack, operation=operation, detail=detail)

    for rule in RULES:
        for hay, is_diagnostic in [*((d, True) for d in diagnostics), (text, False)]:
            line = _matching_line(hay, rule.pattern)
            if line is not None:
                # An engine diagnostic is one message (often a headline and its bullet
                # points): keep all of it. From raw CLI output, keep the telling line.
                message = _one_line(hay, limit=800) if is_diagnostic and rule.kind is ErrorKind.CONFIG else line
                return OperationError(
                    rule.kind, rule.summary or message,
                    stack=stack, operation=operation, policy_violations=violations,
                    detail=detail, retry_after=30.0 if rule.kind is ErrorKind.CONFLICT else None,
                )

    message = _best_message([*diagnostics, text]) or type(failure).__name__
    return OperationError(ErrorKind.UNKNOWN, _one_line(message), stack=stack, operation=operation,
                          policy_violations=violations, detail=detail)


def _matching_line(text: str, pattern: re.Pattern[str]) -> str | None:
    """The most telling line that matches: an `error:` line or an exception's own line
    rather than, say, the traceback's source line that raised it."""
    candidates = [_RESOURCE_PREFIX.sub("", ln).strip() for ln in text.splitlines() if pattern.search(ln)]
    for line in candidates:
        if line.lower().startswith("error:") or _EXCEPTION_LINE.match(line):
            return _one_line(line)
    if candidates:
        return _one_line(candidates[0])
    if pattern.search(text):  # a match spanning lines
        return _first_error_line(text) or _one_line(text)
    return None


def _first_line(text: str, rule: _Rule) -> str | None:
    return _matching_line(text, rule.pattern)


# The engine prefixes program output with the resource it belongs to.
_RESOURCE_PREFIX = re.compile(r"^\s*pulumi:pulumi:Stack \S+(?: running)?\s+")
_EXCEPTION_LINE = re.compile(r"^([\w.]*(?:Error|Exception|Interrupt|Exit)\b:?.*)$")
_POLICY_PACK_FAILED = re.compile(r"error: (policy pack .*)$", re.MULTILINE)


def _best_message(texts: Sequence[str]) -> str | None:
    """The line a person should read first: a broken policy pack, the exception a program
    died of (the last line of its traceback), else the first error line."""
    for text in texts:
        match = _POLICY_PACK_FAILED.search(text)
        if match:
            return match.group(1)
    for text in texts:
        if "Traceback (most recent call last)" in text or "unhandled exception" in text:
            lines = [_RESOURCE_PREFIX.sub("", ln).strip() for ln in text.splitlines()]
            exceptions = [ln for ln in lines if _EXCEPTION_LINE.match(ln) and ":" in ln]
            if exceptions:
                return exceptions[-1] if "KeyboardInterrupt" not in exceptions[-1] else (
                    next((e for e in reversed(exceptions) if "KeyboardInterrupt" not in e), exceptions[-1]))
    for text in texts:
        line = _first_error_line(text)
        if line:
            return line
    return None


def _first_error_line(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines()]
    for line in lines:
        if line.lower().startswith("error:"):
            return _one_line(line)
    for line in lines:
        if line and not _NOISE.match(line):
            return _one_line(line)
    return None


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    text = re.sub(r"^error:\s*", "", text, flags=re.IGNORECASE)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class RetryPolicy:
    """Exponential backoff for transient failures: attempts, first delay, cap."""

    attempts: int = 3
    initial_delay: float = 2.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    retry_kinds: frozenset[ErrorKind] = field(default_factory=lambda: frozenset({ErrorKind.TRANSIENT}))

    def delays(self) -> Iterable[float]:
        delay = self.initial_delay
        for _ in range(max(self.attempts - 1, 0)):
            yield min(delay, self.max_delay)
            delay *= self.multiplier

    def should_retry(self, error: OperationError) -> bool:
        return error.kind in self.retry_kinds


NO_RETRY = RetryPolicy(attempts=1)
