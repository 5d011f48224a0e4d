"""What AdminService.Submit makes of a caller's job request before anything is stored.

A job from the API is not a forge job, whatever the request says:

* ``source`` is ``JOB_SOURCE_ADMIN`` and ``submitted_by`` the caller's name, so
  the integration never reports it to a forge and every view shows who sent it;
* ``trusted`` (secrets) is kept only for an admin-role caller on a node whose
  config allows it (``admin.trusted_submit``), else forced off;
* the clone URL's ``user:password`` is cut out. The job record keeps the bare
  URL; the credentials go to ``Store.put_clone_credentials`` (apart, until the
  job ends), and the node hands them to the runner only (``clone_credentials``
  marks the request). They are not replaced by a forge token: an operator may
  build any repository, and Solstice's forge token must not be sent to a URL
  a caller chose.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.cloneurl import split_userinfo
from common.rpc import jobs_pb2
from orchestrator.operators import Principal, Role


@dataclass(frozen=True)
class Admitted:
    """A request as it will be stored, and the clone credentials kept apart ("" when none)."""

    request: jobs_pb2.JobRequest
    userinfo: str = ""

    def __repr__(self) -> str:  # the credentials stay out of logs and tracebacks
        return f"Admitted(job_id={self.request.job_id!r}, userinfo={'***' if self.userinfo else ''!r})"


def admit(request: jobs_pb2.JobRequest, caller: Principal, trusted_submit: bool) -> Admitted:
    """The request marked as ``caller``'s, trust decided, clone credentials taken out."""
    out = jobs_pb2.JobRequest()
    out.CopyFrom(request)
    out.source = jobs_pb2.JOB_SOURCE_ADMIN
    out.submitted_by = caller.name
    out.trusted = request.trusted and trusted_submit and caller.may(Role.ADMIN)
    clean, userinfo = split_userinfo(request.checkout.clone_url)
    out.checkout.clone_url = clean
    out.clone_credentials = bool(userinfo)
    return Admitted(out, userinfo)
