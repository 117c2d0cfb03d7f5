"""gcp-storage-emulator with Cloud Storage's upload preconditions: `python tests/gcs_emulator.py start ...`.

The emulator ignores `ifGenerationMatch` on uploads; Cloud Storage answers 412
Precondition Failed when the object's generation is not the one given (0: no
object). fab push relies on that to claim versions and history entries and to
update models.config, so the tests' emulator enforces it. Its HTTP server
handles one request at a time, so the check and the write cannot interleave.
Everything else is the emulator's own code, started by its own main().
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_insert = objects.insert
PRECONDITION_FAILED = "At least one of the pre-conditions you specified did not hold."  # Cloud Storage's words


def _object_name(request: Any) -> str:
    if "name" in request.query:
        return request.query["name"][0]
    data = request.data if isinstance(request.data, dict) else {}
    return (data.get("meta") or data).get("name", "")


def insert_with_preconditions(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
    expected = request.query.get("ifGenerationMatch")
    if expected:
        try:
            generation = str(storage.get_file_obj(request.params["bucket_name"], _object_name(request))["generation"])
        except NotFound:
            generation = "0"
        if generation != expected[0]:
            response.status = HTTPStatus.PRECONDITION_FAILED
            response.json({"error": {"code": 412, "message": PRECONDITION_FAILED,
                                     "errors": [{"reason": "conditionNotMet"}]}})
            return None
    return _insert(request, response, storage, *args, **kwargs)


objects.insert = insert_with_preconditions  # before the server module builds its routes from it

if __name__ == "__main__":
    from gcp_storage_emulator.__main__ import main

    main()
