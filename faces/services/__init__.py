"""Faces, matches and member indexing.

The rules every engine shares live here:
- a photo's faces may match only members of the photo's event;
- each face goes to at most one member (the nearest) and each member to at most one face of a
  photo, all under the engine's threshold;
- a rejected match ("not me") is never re-created for that member and photo.

This package never imports ``photos``: it is handed ids and images.
"""

from .accounting import (  # noqa: F401
    engine_calls_count,
    engine_calls_summary,
    engine_faces_stored,
)
from .clusters import cluster_assign, face_assign  # noqa: F401
from .engines import engine_get  # noqa: F401
from .indexing import faces_detect_for_photo, faces_store  # noqa: F401
from .matching import (  # noqa: F401
    event_viewers_refresh,
    match_reject,
    match_restore,
    matches_assign,
    member_search_record,
    photos_viewers_refresh,
)
from .members import (  # noqa: F401
    BACKMATCH_JOB,
    CONSENT_TRUE,
    JOB_KINDS,
    member_backmatch_request,
    member_forget,
    member_index,
    member_match_event,
    selfie_register,
)
from .rounds import (  # noqa: F401
    collections_orphaned_sweep,
    event_deleted,
    event_forget,
    event_rematch,
    event_rematch_request,
    event_rematch_schedule,
    events_rematch_sweep,
)
from .settle import event_settle, events_settle_sweep  # noqa: F401
from .vectors import (  # noqa: F401
    photo_vectors_sweep,
    photos_deleting,
)
