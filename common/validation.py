"""The one check of job requests: what ``AdminService.Submit`` and the webhooks accept.

Every field that later reaches a URL, a command line, a file name, a queue or
a forge API is checked here, before anything is stored or sent. A refusal is
a ``RequestInvalid`` naming the field (``jobs[1].checkout.sha``) and saying
what is wrong with it in one line.

    SolsticeError
    └── RequestInvalid      ``field`` + ``problem``; also a ValueError

    check_request(request, rules, field)  one JobRequest, every field
    check_requests(requests, rules)       a Submit: every request, and their number
    check_checkout(checkout, rules, ...)  where the code comes from
    check_sha / check_ref / check_repo / check_clone_url / check_id / check_label   one field each

``CloneRules`` says which clone URLs a deployment takes: ``https``, ``ssh``,
``git`` and scp-like ``user@host:path`` always; plain ``http`` only from a
forge that is itself reached over http; local paths and ``file://`` only where
the configuration allows them (``solstice serve`` does by default, so ``ciadm
submit`` from a local checkout works; a multi-host node does not).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from common.artifacts import check_outputs
from common.errors import SolsticeError
from common.rpc import jobs_pb2
from common.workflow.limits import ENV_VALUE_CEILING, FILE_CEILING, NAME_CEILING, SCRIPT_CEILING, TIMEOUT_CEILING
from common.workflow.names import ENV_NAME_RULE, ID_RULE, is_env_name, is_id, workdir_problem

# Forges, and what ``Checkout.repo`` is for each.
FORGES = ("github", "forgejo", "git", "local")

# Repository names as the forges allow them. GitHub: owner = letters, digits
# and '-' (at most 39), name = letters, digits, '.', '_', '-' (at most 100).
# Forgejo/Gitea (models/user.IsUsableUsername, repo names): owner also takes
# '.' and '_' (at most 40), names the same as GitHub's. Neither is '.' or '..'.
_OWNER = {
    "github": re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}"),
    "forgejo": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}"),
}
_REPO_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
SHA_RULE = "40 or 64 lowercase hexadecimal digits"
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

# Refs the runner can fetch (runner.checkout): ``refs/`` and path components
# of letters, digits, '.', '_', '-'; plus git's own rules (git check-ref-format):
# no component starting with '.' or ending in '.lock', no '..', no trailing '.' or '/'.
REF_RULE = "refs/... made of letters, digits, '.', '_', '-' and '/' (git's rules, without other characters)"
_REF = re.compile(r"refs/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
MAX_REF = 255

# Job and run ids become message ids and one word of an event routing key
# (no dots); labels are routing keys and part of queue names (no wildcards).
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:-]{0,127}")
JOB_ID_RULE = "letters, digits, '_', ':' or '-' (at most 128, starting with a letter or digit)"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
LABEL_RULE = "letters, digits, '.', '_' or '-' (at most 100, starting with a letter or digit)"

_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9][A-Za-z0-9.-]*:[^\s-][^\s]*")
_REMOTE_SCHEMES = ("https", "ssh", "git")
MAX_URL = 2048

# Sizes: a request is one queue message and one store row; these keep both small.
MAX_JOBS_PER_SUBMIT = 256
MAX_STEPS = 256
# The ceilings of the configurable workflow limits (common/workflow/limits.py): a
# workflow within its limits always makes requests that pass here.
MAX_SCRIPT_BYTES = SCRIPT_CEILING
MAX_TEXT = NAME_CEILING  # names, workflow names, step names
MAX_ENV_ENTRIES = 256
MAX_ENV_VALUE_BYTES = ENV_VALUE_CEILING
MAX_LIST = 256  # needs, secrets
MAX_TIMEOUT = TIMEOUT_CEILING
MAX_REQUEST_BYTES = FILE_CEILING
MAX_PULL_REQUEST = 2**31 - 1


class RequestInvalid(SolsticeError, ValueError):
    """A job request field is not acceptable; ``field`` names it, ``problem`` says why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class CloneRules:
    """Which clone URLs are taken besides https, ssh and git (see the module docstring)."""

    allow_local: bool = False  # absolute paths and file:// URLs
    allow_http: bool = False  # plain http://


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _show(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def is_job_id(value: str) -> bool:
    """True for a valid job or run id."""
    return _JOB_ID.fullmatch(value) is not None


def is_label(value: str) -> bool:
    """True for a valid runs_on label."""
    return _LABEL.fullmatch(value) is not None


def check_sha(sha: str, field: str = "sha") -> str:
    """``sha`` if it is a full commit id (40 or 64 lowercase hex)."""
    if not _SHA.fullmatch(sha):
        raise RequestInvalid(field, f"{_show(sha)} is not a commit id: use {SHA_RULE}")
    return sha


def ref_problem(ref: str) -> str | None:
    """Why Solstice cannot check ``ref`` out (a name git may well allow), or None."""
    if len(ref) > MAX_REF:
        return f"is longer than {MAX_REF} characters"
    if not _REF.fullmatch(ref):
        return f"is not a ref Solstice can check out: use {REF_RULE}"
    parts = ref.split("/")
    if ".." in ref or any(p.startswith(".") or p.endswith(".lock") for p in parts) or ref.endswith("."):
        return "is not a valid git ref name ('..', a component starting with '.' or ending in '.lock')"
    return None


def check_ref(ref: str, field: str = "ref") -> str:
    """``ref`` if it is empty (a detached commit) or a ref the runner can fetch."""
    problem = ref_problem(ref) if ref else None
    if problem:
        raise RequestInvalid(field, f"{_show(ref)} {problem}")
    return ref


def check_repo(forge: str, repo: str, field: str = "repo") -> str:
    """``repo`` if it is an ``owner/name`` the forge allows (for github and forgejo)."""
    owner, slash, name = repo.partition("/")
    owner_rule = _OWNER[forge]
    if not slash or not owner_rule.fullmatch(owner) or not _REPO_NAME.fullmatch(name) or name in (".", ".."):
        chars = "letters, digits and '-'" if forge == "github" else "letters, digits, '.', '_' and '-'"
        raise RequestInvalid(
            field, f"{_show(repo)} is not a {forge} repository: use owner/name (owner: {chars}; "
                   "name: letters, digits, '.', '_' and '-')")
    return repo


def check_clone_url(url: str, rules: CloneRules, field: str = "clone_url") -> str:
    """``url`` if git may fetch from it under ``rules``."""
    if not url:
        raise RequestInvalid(field, "is empty: the runner needs a URL to fetch the commit from")
    if len(url) > MAX_URL:
        raise RequestInvalid(field, f"is longer than {MAX_URL} characters")
    if _has_control(url) or any(c.isspace() for c in url) or url.startswith("-"):
        raise RequestInvalid(field, f"{_show(url)} is not a URL git can fetch (spaces, control characters or a leading '-')")
    allowed = "https://, ssh://, git:// or user@host:path"
    if url.startswith("/") or url.lower().startswith("file:"):
        if not rules.allow_local:
            raise RequestInvalid(field, f"{_show(url)} is a local path; this node only takes {allowed} "
                                        "(allow_local_checkouts is off)")
        if url.lower().startswith("file:") and not url.lower().startswith("file:///"):
            raise RequestInvalid(field, f"{_show(url)} is not a file:/// URL of an absolute path")
        return url
    if _SCP_LIKE.fullmatch(url) and "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise RequestInvalid(field, f"{_show(url)} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme == "http" and rules.allow_http:
        scheme = "https"  # judged as https from here on
    if scheme not in _REMOTE_SCHEMES:
        also = " (plain http only from a forge reached over http)" if scheme == "http" else ""
        raise RequestInvalid(field, f"{_show(url)}: the scheme must be {allowed}{also}")
    if not parts.hostname or parts.hostname.startswith("-"):
        raise RequestInvalid(field, f"{_show(url)} names no host")
    return url


def check_job_id(value: str, field: str) -> str:
    if not is_job_id(value):
        raise RequestInvalid(field, f"{_show(value)} is not a valid id: {JOB_ID_RULE}")
    return value


def check_label(value: str, field: str = "runs_on") -> str:
    if not is_label(value):
        raise RequestInvalid(field, f"{_show(value)} is not a valid runs_on label: {LABEL_RULE}")
    return value


def check_checkout(checkout: jobs_pb2.Checkout, rules: CloneRules, field: str = "checkout") -> None:
    """Where the code comes from: forge, repository, clone URL, ref, commit, PR number."""
    forge = checkout.forge
    if forge not in FORGES:
        raise RequestInvalid(_join(field, "forge"), f"{_show(forge)} is not one of {', '.join(FORGES)}")
    check_sha(checkout.sha, _join(field, "sha"))
    check_ref(checkout.ref, _join(field, "ref"))
    check_clone_url(checkout.clone_url, rules, _join(field, "clone_url"))
    if forge in _OWNER:
        check_repo(forge, checkout.repo, _join(field, "repo"))
    elif not checkout.repo or len(checkout.repo) > MAX_URL or _has_control(checkout.repo):
        raise RequestInvalid(_join(field, "repo"), "must name the repository (its URL or path), one line")
    if forge == "local" and not rules.allow_local:
        raise RequestInvalid(_join(field, "forge"), "local checkouts are not taken here (allow_local_checkouts is off)")
    if checkout.installation_id < 0:
        raise RequestInvalid(_join(field, "installation_id"), "must not be negative")
    if not 0 <= checkout.pull_request <= MAX_PULL_REQUEST:
        raise RequestInvalid(_join(field, "pull_request"), f"must be 0..{MAX_PULL_REQUEST}")


def _text(value: str, field: str, limit: int = MAX_TEXT) -> None:
    if len(value) > limit or "\n" in value or _has_control(value):
        raise RequestInvalid(field, f"must be one line of at most {limit} characters")


def _timeout(value: float, field: str) -> None:
    if not math.isfinite(value) or not 0 <= value <= MAX_TIMEOUT:
        raise RequestInvalid(field, f"must be 0..{MAX_TIMEOUT:.0f} seconds (0 = the default)")


def _env(env: Mapping[str, str], field: str) -> None:
    if len(env) > MAX_ENV_ENTRIES:
        raise RequestInvalid(field, f"has {len(env)} variables, more than {MAX_ENV_ENTRIES}")
    for name, value in env.items():
        if not is_env_name(name):
            raise RequestInvalid(f"{field}[{name!r}]", f"is not a variable name: {ENV_NAME_RULE}")
        if len(value.encode()) > MAX_ENV_VALUE_BYTES or "\0" in value:
            raise RequestInvalid(f"{field}[{name!r}]", f"must be at most {MAX_ENV_VALUE_BYTES} bytes, without NUL")


def _names(values: Sequence[str], field: str, valid, rule: str) -> None:  # type: ignore[no-untyped-def]
    if len(values) > MAX_LIST:
        raise RequestInvalid(field, f"lists {len(values)} names, more than {MAX_LIST}")
    for i, value in enumerate(values):
        if not valid(value):
            raise RequestInvalid(f"{field}[{i}]", f"{_show(value)} is not valid: {rule}")


def _step(step: jobs_pb2.Step, field: str) -> None:
    _text(step.name, _join(field, "name"))
    if not step.run.strip():
        raise RequestInvalid(_join(field, "run"), "is empty")
    if len(step.run.encode()) > MAX_SCRIPT_BYTES or "\0" in step.run:
        raise RequestInvalid(_join(field, "run"), f"must be at most {MAX_SCRIPT_BYTES} bytes, without NUL")
    _env(step.env, _join(field, "env"))
    _timeout(step.timeout_seconds, _join(field, "timeout_seconds"))
    if step.workdir:
        problem = workdir_problem(step.workdir)
        if problem:
            raise RequestInvalid(_join(field, "workdir"), problem)


def check_request(request: jobs_pb2.JobRequest, rules: CloneRules, field: str = "") -> None:
    """Every field of one job request; ``RequestInvalid`` names the first that is wrong."""
    check_job_id(request.job_id, _join(field, "job_id"))
    check_job_id(request.run_id, _join(field, "run_id"))
    if not is_id(request.key):
        raise RequestInvalid(_join(field, "key"), f"{_show(request.key)} is not a workflow job id: {ID_RULE}")
    check_label(request.runs_on, _join(field, "runs_on"))
    _text(request.name, _join(field, "name"))
    _text(request.workflow_name, _join(field, "workflow_name"))
    check_checkout(request.checkout, rules, _join(field, "checkout"))
    if not request.steps:
        raise RequestInvalid(_join(field, "steps"), "a job needs at least one step")
    if len(request.steps) > MAX_STEPS:
        raise RequestInvalid(_join(field, "steps"), f"has {len(request.steps)} steps, more than {MAX_STEPS}")
    for i, step in enumerate(request.steps):
        _step(step, _join(field, f"steps[{i}]"))
    _env(request.env, _join(field, "env"))
    _timeout(request.timeout_seconds, _join(field, "timeout_seconds"))
    _names(request.needs, _join(field, "needs"), is_id, ID_RULE)
    _names(request.secrets, _join(field, "secrets"), is_env_name, ENV_NAME_RULE)
    if request.cache_base_ref:
        check_ref(request.cache_base_ref, _join(field, "cache_base_ref"))
    problem = check_outputs(request, _join(field, ""))
    if problem:
        where, _, why = problem.partition(": ")
        raise RequestInvalid(where, why)
    size = request.ByteSize()
    if size > MAX_REQUEST_BYTES:
        raise RequestInvalid(field or "request", f"is {size} bytes, more than {MAX_REQUEST_BYTES}")


def check_requests(requests: Sequence[jobs_pb2.JobRequest], rules: CloneRules, field: str = "jobs") -> None:
    """A whole submission: at least one request, at most ``MAX_JOBS_PER_SUBMIT``, each valid, ids unique."""
    if not requests:
        raise RequestInvalid(field, "lists no job")
    if len(requests) > MAX_JOBS_PER_SUBMIT:
        raise RequestInvalid(field, f"lists {len(requests)} jobs, more than {MAX_JOBS_PER_SUBMIT}")
    seen: set[str] = set()
    for i, request in enumerate(requests):
        check_request(request, rules, f"{field}[{i}]")
        if request.job_id in seen:
            raise RequestInvalid(f"{field}[{i}].job_id", f"{_show(request.job_id)} is given twice")
        seen.add(request.job_id)
