"""``S3Objects``: archived log chunks in S3-compatible object storage (``logs.archive: s3``).

The archive's index stays in the state store's database (``SqlLogArchive``);
only the chunks' bytes go to the bucket, one object per chunk under
``<prefix><job>/<attempt>/<first>-<last>-<random>.zst``. Needs the ``s3`` extra
(aiobotocore): ``pip install 'solstice-ci[s3]'``. Credentials are
``logs.s3.access_key_id`` with ``secret_access_key_file``, or (both unset)
botocore's usual chain: the environment, a profile, an instance role.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from orchestrator.logstore.archive import ArchiveError, ObjectStore
from orchestrator.logstore.settings import S3Config

DELETE_BATCH = 1000  # S3's DeleteObjects limit


class S3Objects(ObjectStore):
    """Chunk bytes in ``config.bucket``; open with ``await S3Objects.open(config)``."""

    def __init__(self, config: S3Config, client: Any, stack: contextlib.AsyncExitStack) -> None:
        self.config = config
        self._client = client
        self._stack = stack

    def __repr__(self) -> str:
        return f"S3Objects(bucket={self.config.bucket!r}, endpoint={self.config.endpoint_url or 'AWS'!r})"

    @classmethod
    async def open(cls, config: S3Config) -> S3Objects:
        try:
            from aiobotocore.session import get_session
        except ImportError as err:
            raise ArchiveError("logs.archive: s3 needs the s3 extra: pip install 'solstice-ci[s3]'") from err
        options: dict[str, Any] = {"region_name": config.region}
        if config.endpoint_url:
            options["endpoint_url"] = config.endpoint_url
        if config.access_key_id:
            options["aws_access_key_id"] = config.access_key_id
            options["aws_secret_access_key"] = config.secret_access_key()
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(get_session().create_client("s3", **options))
        objects = cls(config, client, stack)
        try:
            await client.head_bucket(Bucket=config.bucket)
        except Exception as err:  # botocore's errors share no base worth naming here
            await stack.aclose()
            raise ArchiveError(f"cannot use the S3 bucket {config.bucket!r} (logs.s3): {_why(err)}") from err
        return objects

    def _key(self, key: str) -> str:
        return self.config.prefix + key

    async def put(self, key: str, data: bytes) -> None:
        try:
            await self._client.put_object(Bucket=self.config.bucket, Key=self._key(key), Body=data)
        except Exception as err:
            raise ArchiveError(f"cannot store {key} in the S3 bucket {self.config.bucket!r}: {_why(err)}") from err

    async def get(self, key: str) -> bytes:
        try:
            answer = await self._client.get_object(Bucket=self.config.bucket, Key=self._key(key))
            async with answer["Body"] as body:
                return bytes(await body.read())
        except Exception as err:
            raise ArchiveError(f"cannot read {key} from the S3 bucket {self.config.bucket!r}: {_why(err)}") from err

    async def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            objects = [{"Key": self._key(key)} for key in keys[start : start + DELETE_BATCH]]
            try:
                answer = await self._client.delete_objects(Bucket=self.config.bucket,
                                                           Delete={"Objects": objects, "Quiet": True})
            except Exception as err:
                raise ArchiveError(f"cannot delete from the S3 bucket {self.config.bucket!r}: {_why(err)}") from err
            failed = answer.get("Errors") or []
            if failed:
                raise ArchiveError(f"the S3 bucket {self.config.bucket!r} kept {len(failed)} objects: "
                                   f"{failed[0].get('Key')}: {failed[0].get('Message')}")

    async def close(self) -> None:
        await self._stack.aclose()


def _why(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".strip(": ")
    return str(err) or type(err).__name__
